/**
 * Timing helpers shared by the storage driver benchmarks (btrfs, zfs, qcow2): time one call, and
 * print a driver's samples beside the same work done bare.
 */

/** Wall-clock milliseconds one call takes. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Median (the upper one of an even count) and mean of samples in ms. */
export function stats(ms: number[]): { median: number; mean: number } {
  const sorted = [...ms].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)]!, mean: ms.reduce((a, b) => a + b, 0) / ms.length };
}

/**
 * One line: the driver's median and mean beside the baseline's, and how far the driver's median is
 * above the baseline's. Example: `report('list 1,000 snapshots', driverMs, bareMs)`.
 */
export function report(label: string, driver: number[], baseline: number[], labels: { baseline?: string; difference?: string } = {}): void {
  const { baseline: baselineLabel = 'bare', difference = 'driver' } = labels;
  const d = stats(driver);
  const b = stats(baseline);
  const overhead = ((d.median - b.median) / b.median) * 100;
  console.log(
    `${label}: driver median ${d.median.toFixed(2)} ms (mean ${d.mean.toFixed(2)}), ${baselineLabel} median ${b.median.toFixed(2)} ms ` +
      `(mean ${b.mean.toFixed(2)}), ${difference} ${overhead >= 0 ? '+' : ''}${overhead.toFixed(1)} %`,
  );
}

/**
 * Runs round `round`'s steps as a rotation starting at step `round % n`, so over the rounds each
 * side goes first equally often: the first of back-to-back runs on one image or pool pays for cold
 * caches and metadata that the next one finds warm. Example:
 *   for (let i = 0; i < 30; i++) await rotated(i, [() => viaDriver(i), () => bare(i)]);
 */
export async function rotated(round: number, steps: ReadonlyArray<() => Promise<unknown>>): Promise<void> {
  for (let k = 0; k < steps.length; k++) await steps[(round + k) % steps.length]!();
}
