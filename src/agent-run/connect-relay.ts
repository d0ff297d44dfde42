// CONNECT through the local proxy: the client's `CONNECT host:port` is sent on to the gateway
// on a connection of its own, with the agent's token, and the gateway's answer is relayed as
// it is — a 200 and then the bytes both ways, or a refusal (403, 407, …) with its JSON body, so
// the agent sees the gateway's reason. Nothing inside the tunnel is read here.
import net, { type Socket } from 'node:net';

/** The gateway's answer head; far above what it sends. */
const MAX_HEAD_BYTES = 16 * 1024;
const HEAD_TIMEOUT_MS = 30_000;

export interface ConnectRelay {
  readonly gatewayHost: string;
  readonly gatewayPort: number;
  /** host:port as the client sent it. */
  readonly target: string;
  readonly token: string;
  readonly userAgent: string | undefined;
  /** The client's connection, and the bytes it sent after its CONNECT head. */
  readonly client: Socket;
  readonly head: Buffer;
  /** Told of every socket opened, to close them all when the proxy stops. */
  readonly track: (socket: Socket) => void;
}

export function relayConnect(relay: ConnectRelay): void {
  const { client } = relay;
  let answered = false;
  const gateway = net.connect({ host: relay.gatewayHost, port: relay.gatewayPort });
  relay.track(gateway);
  gateway.on('error', (err: NodeJS.ErrnoException) => {
    if (!answered) {
      answered = true;
      writeAnswer(client, 502, 'Bad Gateway', {
        error: 'gateway_unreachable',
        error_description: `reins run cannot reach the gateway: ${err.code ?? err.message}`,
      });
    } else client.destroy();
  });
  client.on('close', () => gateway.destroy());
  gateway.on('connect', () => {
    const lines = [
      `CONNECT ${relay.target} HTTP/1.1`,
      `Host: ${relay.target}`,
      `Proxy-Authorization: Bearer ${relay.token}`,
    ];
    if (relay.userAgent !== undefined) lines.push(`User-Agent: ${relay.userAgent}`);
    gateway.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
  readHead(gateway).then(
    ({ head, rest, status }) => {
      answered = true;
      client.write(head);
      if (rest.length > 0) client.write(rest);
      if (status === 200) {
        if (relay.head.length > 0) gateway.write(relay.head);
        client.pipe(gateway);
        gateway.on('close', () => client.destroy());
      }
      // A refusal: its body follows the head until the gateway closes.
      gateway.pipe(client);
    },
    (err: Error) => {
      if (answered) return;
      answered = true;
      gateway.destroy();
      writeAnswer(client, 502, 'Bad Gateway', {
        error: 'gateway_unreachable',
        error_description: `reins run could not read the gateway's answer: ${err.message}`,
      });
    },
  );
}

/** Reads an HTTP response head; `rest` is what came after it in the same reads. */
function readHead(socket: Socket): Promise<{ head: Buffer; rest: Buffer; status: number }> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(
      () => done(new Error(`no answer within ${HEAD_TIMEOUT_MS} ms`)),
      HEAD_TIMEOUT_MS,
    );
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffered.length > MAX_HEAD_BYTES) done(new Error('the answer head is too long'));
        return;
      }
      const head = buffered.subarray(0, end + 4);
      const status = Number(/^HTTP\/1\.[01] ([0-9]{3})/.exec(head.toString('latin1'))?.[1]);
      if (!Number.isInteger(status)) {
        done(new Error('the answer is not HTTP'));
        return;
      }
      done(undefined, { head, rest: buffered.subarray(end + 4), status });
    };
    const onEnd = () => done(new Error('the gateway closed the connection'));
    function done(err: Error | undefined, value?: { head: Buffer; rest: Buffer; status: number }): void {
      clearTimeout(timer);
      // Paused until the caller pipes it on: nothing that followed the head is lost.
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      if (err !== undefined || value === undefined) reject(err ?? new Error('no answer'));
      else resolve(value);
    }
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  });
}

/** An answer to a CONNECT that reins run itself gives (the gateway was never asked). */
export function writeAnswer(
  socket: Socket,
  status: number,
  text: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): void {
  if (!socket.writable) return;
  const json = JSON.stringify(body);
  const lines = [
    `HTTP/1.1 ${status} ${text}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(json)}`,
    'connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${json}`);
}
