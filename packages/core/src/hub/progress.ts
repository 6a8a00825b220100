/**
 * Download progress: on a terminal one line per file, redrawn in place with the bytes, the rate
 * and the time left; elsewhere (a log, CI) a plain line when a file starts and when it ends.
 */
import { formatBytes as formatAnyBytes } from '../bytes.js';

/** Transfers count in powers of 1000, as download tools do. */
export const formatBytes = (bytes: number): string => formatAnyBytes(bytes, 1000);

export interface DownloadProgress {
  /** Bytes received so far (including those a resumed download already had). */
  update(received: number): void;
  done(): void;
}

export type ProgressFactory = (label: string, total: number, resumedFrom: number) => DownloadProgress;

interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** The reporter for `stream` (stderr by default). */
export function progressReporter(stream: ProgressStream = process.stderr, now: () => number = Date.now): ProgressFactory {
  return (label, total, resumedFrom) => {
    const started = now();
    const resumed = resumedFrom > 0 ? `, resuming at ${formatBytes(resumedFrom)}` : '';
    if (!stream.isTTY) {
      stream.write(`downloading ${label} (${formatBytes(total)}${resumed})\n`);
      let received = resumedFrom;
      return {
        update: (bytes) => {
          received = bytes;
        },
        done: () => {
          const seconds = Math.max((now() - started) / 1000, 1e-3);
          stream.write(`downloaded ${label}: ${formatBytes(received)} in ${seconds.toFixed(1)} s\n`);
        },
      };
    }
    let lastDraw = 0;
    const draw = (received: number, final: boolean) => {
      const t = now();
      if (!final && t - lastDraw < 100) return;
      lastDraw = t;
      const seconds = Math.max((t - started) / 1000, 1e-3);
      const rate = (received - resumedFrom) / seconds;
      const fraction = total > 0 ? received / total : 1;
      const width = 20;
      const filled = Math.round(fraction * width);
      const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
      const eta = final
        ? `in ${formatDuration(seconds)}`
        : `${formatDuration(rate > 0 ? (total - received) / rate : Number.POSITIVE_INFINITY)} left`;
      const line = `${label} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(received)}/${formatBytes(total)} ${formatBytes(rate)}/s ${eta}`;
      const columns = stream.columns ?? 120;
      stream.write(`\r${line.length > columns - 1 ? line.slice(line.length - columns + 1) : line}\x1b[K${final ? '\n' : ''}`);
    };
    let received = resumedFrom;
    return {
      update: (bytes) => {
        received = bytes;
        draw(received, false);
      },
      done: () => draw(received, true),
    };
  };
}
