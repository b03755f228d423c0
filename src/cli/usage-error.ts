/** A call the CLI cannot make sense of: exit 2 with the command's usage line. */
export class UsageError extends Error {
  override name = 'UsageError';
}
