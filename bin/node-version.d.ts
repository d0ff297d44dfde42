// Types for bin/node-version.js (plain JavaScript so that old Node versions can run it).
export declare const MINIMUM: string;
export declare function isSupported(running: string, minimum?: string): boolean;
export declare function nodeVersionProblem(running: string): string | null;
