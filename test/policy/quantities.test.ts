import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDuration, parseSize } from '../../src/monitor/policy.ts';
import { formatDuration, formatSize, suggestDuration, suggestSize } from '../../src/policy/quantities.ts';

describe('a duration as text', () => {
  it.each([
    [86_400_000, '24h'],
    [5_400_000, '90m'],
    [90_000, '90s'],
    [0, '0s'],
  ])('%i ms is %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('reads back as the same number of milliseconds', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 999_999_999 }),
        fc.constantFrom(1_000, 60_000, 3_600_000),
        (n, unit) => {
          expect(parseDuration(formatDuration(n * unit))).toBe(n * unit);
        },
      ),
    );
  });
});

describe('a size as text', () => {
  it.each([
    [50_000_000, '50MB'],
    [3e9, '3GB'],
    [1_500_000, '1500kB'],
    [1500, '1500'],
    [0, '0'],
  ])('%i bytes is %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('reads back as the same number of bytes', () => {
    // Up to twelve digits of any unit, at most the 9 PB validation accepts.
    const sizes = fc
      .constantFrom(1, 1e3, 1e6, 1e9)
      .chain((unit) =>
        fc.integer({ min: 0, max: Math.min(999_999_999_999, 9e15 / unit) }).map((n) => n * unit),
      );
    fc.assert(
      fc.property(sizes, (bytes) => {
        expect(parseSize(formatSize(bytes))).toBe(bytes);
      }),
    );
  });
});

describe('the fix suggested for a duration', () => {
  it.each([
    ['1d', '24h'],
    ['7 days', '168h'],
    ['5 min', '5m'],
    ['30 seconds', '30s'],
    ['1.5h', '90m'],
    ['24H', '24h'],
  ])('for %s is %s', (text, fix) => {
    expect(suggestDuration(text)).toBe(fix);
  });

  it.each(['0.5s', '500ms', 'soon', '1w', '9999999999h'])('is none for %s', (text) => {
    expect(suggestDuration(text)).toBeNull();
  });
});

describe('the fix suggested for a size', () => {
  it.each([
    ['50mb', '50MB'],
    ['50 MB', '50MB'],
    ['50M', '50MB'],
    ['1.5MB', '1500kB'],
    ['2TB', '2000GB'],
    ['1MiB', '1048576'],
    ['10KB', '10kB'],
    ['100 bytes', '100'],
  ])('for %s is %s', (text, fix) => {
    expect(suggestSize(text)).toBe(fix);
  });

  it.each(['lots', '1.5', '5ib', '0.0001kB'])('is none for %s', (text) => {
    expect(suggestSize(text)).toBeNull();
  });
});
