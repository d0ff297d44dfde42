import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each test file gets its own database (PGlite in memory, or a fresh PostgreSQL schema),
    // so files run in parallel safely.
    pool: 'forks',
    // V8 in Node 24 has twice aborted a test worker (SIGTRAP, "Check failed:
    // jit_page_->allocations_.erase(addr) == 1" in UnregisterWasmAllocation) while PGlite's wasm
    // code was being freed; wasm code GC frees code while modules still run: off in test workers
    // (docs/decisions.md).
    execArgv: ['--no-wasm-code-gc'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
});
