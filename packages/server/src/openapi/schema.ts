/**
 * The small slice of OpenAPI 3.1 this server's document uses, typed, and helpers that write
 * JSON Schemas (2020-12, as OpenAPI 3.1 embeds them) without repeating `type:` on every line.
 */

/** A JSON Schema as OpenAPI 3.1 takes it (only the keywords used here). */
export interface Schema {
  type?:
    | 'string'
    | 'integer'
    | 'number'
    | 'boolean'
    | 'object'
    | 'array'
    | 'null'
    | Array<'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array' | 'null'>;
  description?: string;
  enum?: ReadonlyArray<string | number | boolean | null>;
  const?: string | number | boolean | null;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  minItems?: number;
  maxItems?: number;
  properties?: Readonly<Record<string, Schema>>;
  required?: readonly string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  oneOf?: readonly Schema[];
  anyOf?: readonly Schema[];
  $ref?: string;
  default?: unknown;
  examples?: readonly unknown[];
}

export interface MediaType {
  schema: Schema;
  example?: unknown;
}

export interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  description?: string;
  schema: Schema;
}

export interface ResponseObject {
  description: string;
  content?: Readonly<Record<string, MediaType>>;
}

export interface Operation {
  tags: readonly string[];
  summary: string;
  description?: string;
  operationId: string;
  parameters?: readonly Parameter[];
  requestBody?: { required: boolean; content: Readonly<Record<string, MediaType>> };
  responses: Readonly<Record<string, ResponseObject>>;
  /** `[]`: open even when the server has an API key. */
  security?: ReadonlyArray<Readonly<Record<string, readonly string[]>>>;
}

export type Method = 'get' | 'post' | 'delete';
export type PathItem = Partial<Record<Method, Operation>>;

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  servers: ReadonlyArray<{ url: string }>;
  tags: ReadonlyArray<{ name: string; description: string }>;
  paths: Readonly<Record<string, PathItem>>;
  components: {
    schemas: Readonly<Record<string, Schema>>;
    securitySchemes: Readonly<
      Record<
        string,
        { type: 'http'; scheme: 'bearer'; description: string } | { type: 'apiKey'; in: 'header'; name: string; description: string }
      >
    >;
  };
  security: ReadonlyArray<Readonly<Record<string, readonly string[]>>>;
}

// ---- schema helpers (no `description: undefined` keys: the document is compared and validated as it is) ----

const described = (description: string | undefined): Schema => (description === undefined ? {} : { description });

export const str = (description?: string, extra: Schema = {}): Schema => ({ type: 'string', ...described(description), ...extra });
export const bool = (description?: string, extra: Schema = {}): Schema => ({ type: 'boolean', ...described(description), ...extra });
export const int = (description?: string, extra: Schema = {}): Schema => ({ type: 'integer', ...described(description), ...extra });
export const num = (description?: string, extra: Schema = {}): Schema => ({ type: 'number', ...described(description), ...extra });
export const arr = (items: Schema, description?: string, extra: Schema = {}): Schema => ({
  type: 'array',
  items,
  ...described(description),
  ...extra,
});
export const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
export const oneOf = (schemas: readonly Schema[], description?: string): Schema => ({ oneOf: schemas, ...described(description) });
export const obj = (properties: Readonly<Record<string, Schema>>, required: readonly string[] = [], description?: string): Schema => ({
  type: 'object',
  properties,
  ...(required.length > 0 ? { required } : {}),
  ...described(description),
});
/** A field that may also be sent as `null` (which counts as absent). */
export const nullable = (schema: Schema): Schema => ({ anyOf: [schema, { type: 'null' }] });
/** A free-form object (JSON Schemas, template arguments). */
export const anyObject = (description?: string): Schema => ({ type: 'object', additionalProperties: true, ...described(description) });
