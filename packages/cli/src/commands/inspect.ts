import { statSync } from 'node:fs';

import { GgufFile, isGgufArray, MistralrsError, SafetensorsFile, type GgufValue } from '@mistralrs/quant';

import { resolveModelFile } from './pull.js';
import { formatBytes, formatCount, table } from '../format.js';

export interface InspectOptions {
  /** A .gguf path or a registry model id; the default model when absent. */
  file: string | undefined;
  json: boolean;
  /** Array items shown per metadata key in text output. */
  maxArray: number;
}

/** `mistralrs-server inspect FILE`: prints the file's header; exit code 1 on a bad file. */
export async function inspectCommand(options: InspectOptions): Promise<number> {
  let file: GgufFile | SafetensorsFile;
  try {
    const path = await resolveModelFile(options.file);
    file = isSafetensors(path) ? await SafetensorsFile.open(path) : await GgufFile.open(path);
  } catch (error) {
    const message = error instanceof MistralrsError || error instanceof Error ? error.message : String(error);
    // The native message already names the file; others (fetch failures) say what failed.
    process.stderr.write(`mistralrs-server inspect: ${message}\n`);
    return 1;
  }
  try {
    if (file instanceof SafetensorsFile) {
      process.stdout.write(options.json ? `${JSON.stringify(safetensorsJson(file))}\n` : safetensorsText(file));
    } else {
      process.stdout.write(options.json ? `${JSON.stringify(ggufJson(file), bigintReplacer)}\n` : ggufText(file, options));
    }
    return 0;
  } finally {
    file.close();
  }
}

function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

export function ggufJson(file: GgufFile): object {
  return {
    format: 'gguf',
    path: file.path,
    version: file.version,
    sizeBytes: file.sizeBytes,
    alignment: file.alignment,
    dataOffset: file.dataOffset,
    metadata: file.metadata,
    tensors: file.tensors,
  };
}

export function ggufText(file: GgufFile, options: Pick<InspectOptions, 'maxArray'>): string {
  const out: string[] = [];
  const params = file.tensors.reduce((sum, t) => sum + t.nElements, 0);
  const tensorBytes = file.tensors.reduce((sum, t) => sum + t.sizeBytes, 0);
  out.push(`${file.path}`);
  out.push(
    `  GGUF v${file.version}, ${formatBytes(file.sizeBytes)}, ${file.metadata.length} metadata keys, ` +
      `${file.tensors.length} tensors, ${formatCount(params)} parameters (${formatBytes(tensorBytes)} of data)`,
  );
  const arch = file.architecture;
  const name = file.getString('general.name');
  if (arch || name) out.push(`  ${[name, arch && `architecture ${arch}`].filter(Boolean).join(', ')}`);

  out.push('', 'Metadata');
  out.push(
    table(
      ['key', 'type', 'value'],
      file.metadata.map((e) => [e.key, typeLabel(e.type, e.value), showValue(e.value, options.maxArray)]),
    ),
  );

  const byType = new Map<string, { count: number; bytes: number; params: number }>();
  for (const t of file.tensors) {
    const row = byType.get(t.type) ?? { count: 0, bytes: 0, params: 0 };
    row.count++;
    row.bytes += t.sizeBytes;
    row.params += t.nElements;
    byType.set(t.type, row);
  }
  out.push('', 'Tensor types');
  out.push(
    table(
      ['type', 'tensors', 'parameters', 'size'],
      [...byType].map(([type, r]) => [type, String(r.count), formatCount(r.params), formatBytes(r.bytes)]),
    ),
  );

  out.push('', 'Tensors');
  out.push(
    table(
      ['name', 'type', 'shape', 'elements', 'size', 'offset'],
      file.tensors.map((t) => [
        t.name,
        t.type,
        `[${t.dims.join(', ')}]`,
        formatCount(t.nElements),
        formatBytes(t.sizeBytes),
        `0x${(file.dataOffset + t.offset).toString(16)}`,
      ]),
    ),
  );
  return `${out.join('\n')}\n`;
}

function typeLabel(type: string, value: GgufValue): string {
  return isGgufArray(value) ? `${value.itemType}[${value.items.length}]` : type;
}

function showValue(value: GgufValue, maxArray: number): string {
  if (isGgufArray(value)) {
    const shown = value.items.slice(0, maxArray).map((v) => showValue(v, maxArray));
    const more = value.items.length > maxArray ? `, … ${value.items.length - maxArray} more` : '';
    return `[${shown.join(', ')}${more}]`;
  }
  if (typeof value === 'string') {
    const oneLine = JSON.stringify(value);
    return oneLine.length > 80 ? `${oneLine.slice(0, 77)}…" (${value.length} chars)` : oneLine;
  }
  return String(value);
}

function isSafetensors(path: string): boolean {
  try {
    return path.endsWith('.safetensors') || statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export function safetensorsJson(file: SafetensorsFile): object {
  return { format: 'safetensors', path: file.path, files: file.files, metadata: file.metadata, tensors: file.tensors };
}

export function safetensorsText(file: SafetensorsFile): string {
  const params = file.tensors.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
  const bytes = file.tensors.reduce((sum, t) => sum + t.sizeBytes, 0);
  const out = [
    file.path,
    `  safetensors, ${file.files.length} file(s), ${file.tensors.length} tensors, ` +
      `${formatCount(params)} parameters (${formatBytes(bytes)} of data)`,
    '',
    'Metadata',
    table(
      ['key', 'value'],
      Object.entries(file.metadata).map(([k, v]) => [k, JSON.stringify(v)]),
    ),
    '',
    'Tensors',
    table(
      ['name', 'dtype', 'shape', 'size'],
      file.tensors.map((t) => [t.name, t.dtype, `[${t.shape.join(', ')}]`, formatBytes(t.sizeBytes)]),
    ),
  ];
  return `${out.join('\n')}\n`;
}
