/**
 * A byte count for people: `1.5 GiB` in powers of 1024 (the default: memory, files), or
 * `1.5 GB` in powers of 1000 (`base: 1000`, as download tools count transfers).
 */
export function formatBytes(bytes: number, base: 1000 | 1024 = 1024): string {
  const units = base === 1024 ? ['B', 'KiB', 'MiB', 'GiB', 'TiB'] : ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= base && unit < units.length - 1) {
    value /= base;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
