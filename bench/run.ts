// npm run bench: runs every benchmark in bench/ in turn. BENCH_SMOKE=1 runs each briefly
// (CI does, so that no benchmark rots). Name benchmarks to run only those: npm run bench -- grammar
const all = ['grammar', 'tokens', 'gateway', 'gateway-kids', 'memory', 'sigkill'] as const;
const wanted = process.argv.slice(2);
const chosen = wanted.length > 0 ? all.filter((name) => wanted.includes(name)) : all;

console.log(
  `node ${process.version}, ${process.env.BENCH_SMOKE === '1' ? 'smoke mode (numbers meaningless)' : 'full run'}`,
);
for (const name of chosen) {
  await import(`./${name}.ts`);
}
