/** What went wrong with the Hub, as a kind a caller can branch on and a message a user can act on. */
export type HubErrorKind =
  /** The endpoint did not answer (no network, wrong `HF_ENDPOINT`, DNS). */
  | 'unreachable'
  /** 401/403: a private or gated repository, or a token without access. */
  | 'unauthorized'
  | 'repository_not_found'
  | 'revision_not_found'
  | 'file_not_found'
  /** Offline (or the Hub unreachable) and the cache lacks what was asked for. */
  | 'not_cached'
  /** The bytes received do not hash to the listing's object id. */
  | 'checksum_mismatch'
  /** The disk filled up while writing (nothing partial is left behind). */
  | 'disk_full'
  /** A bad token source, file name or repository id. */
  | 'invalid_argument'
  /** Any other answer of the Hub. */
  | 'http';

export class HubError extends Error {
  override readonly name = 'HubError';
  readonly code = 'HubError';
  constructor(
    readonly kind: HubErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
