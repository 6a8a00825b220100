/** GGUF metadata values as JavaScript sees them. */

export type GgufValueType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'array' | 'u64' | 'i64' | 'f64';

/** 64-bit integers are bigints; every other number is a number. */
export type GgufScalar = number | bigint | boolean | string;

/** An array keeps its element type, so an empty array still says what it holds. */
export interface GgufArray {
  itemType: GgufValueType;
  items: Array<GgufScalar | GgufArray>;
}

export type GgufValue = GgufScalar | GgufArray;

export interface GgufMetadataEntry {
  key: string;
  type: GgufValueType;
  value: GgufValue;
}

/** The wire form the binding uses: 64-bit integers and non-finite floats as strings. */
type WireItem = number | boolean | string | WireArray;
interface WireArray {
  itemType: GgufValueType;
  items: WireItem[];
}

const NON_FINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

export function fromWire(type: GgufValueType, value: WireItem): GgufValue {
  switch (type) {
    case 'u64':
    case 'i64':
      return BigInt(value as string);
    case 'f32':
      return typeof value === 'string' ? (NON_FINITE[value] ?? NaN) : shortestF32(value as number);
    case 'f64':
      return typeof value === 'string' ? (NON_FINITE[value] ?? NaN) : (value as number);
    case 'array': {
      const array = value as WireArray;
      return { itemType: array.itemType, items: array.items.map((item) => fromWire(array.itemType, item)) };
    }
    default:
      return value as GgufScalar;
  }
}

/**
 * The shortest decimal that reads back as the same f32: `1e-5` rather than
 * `0.000009999999747378752`, its exact value as a double. `Math.fround` of the result is the
 * stored f32.
 */
export function shortestF32(value: number): number {
  for (let digits = 1; digits < 9; digits++) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === value) return candidate;
  }
  return value;
}

export function toWire(type: GgufValueType, value: GgufValue): WireItem {
  switch (type) {
    case 'u64':
    case 'i64':
      return String(value);
    case 'f32':
    case 'f64':
      return Number.isFinite(value) ? (value as number) : String(value);
    case 'array': {
      const array = value as GgufArray;
      return { itemType: array.itemType, items: array.items.map((item) => toWire(array.itemType, item)) };
    }
    default:
      return value as number | boolean | string;
  }
}

export function isGgufArray(value: GgufValue | undefined): value is GgufArray {
  return typeof value === 'object' && value !== null && 'items' in value;
}
