/** A request the admin API refuses as malformed (400 invalid_request), with what to send instead. */
export class BadRequest extends Error {}
