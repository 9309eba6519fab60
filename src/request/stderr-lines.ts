/**
 * Splits a backend's stderr into log lines. git writes progress as `\r`-terminated updates of
 * one line ("Counting objects: 1% ... 100%"); only the last state before `\n` is worth a line.
 * Lines are capped so a backend cannot make us hold unbounded stderr.
 */
export class StderrLines {
  private pending = '';

  constructor(
    private readonly emit: (line: string) => void,
    private readonly maxLineChars = 4096,
  ) {}

  push(chunk: Buffer): void {
    const parts = (this.pending + chunk.toString('utf8')).split('\n');
    this.pending = lastProgressState(parts.pop() ?? '').slice(-this.maxLineChars);
    for (const part of parts) this.line(part);
  }

  /** Emits what is left when the stream ends. */
  flush(): void {
    const rest = this.pending;
    this.pending = '';
    this.line(rest);
  }

  private line(raw: string): void {
    const text = lastProgressState(raw).trimEnd();
    if (text !== '')
      this.emit(text.length > this.maxLineChars ? `${text.slice(0, this.maxLineChars)}…` : text);
  }
}

function lastProgressState(text: string): string {
  const trimmed = text.endsWith('\r') ? text.slice(0, -1) : text;
  const cr = trimmed.lastIndexOf('\r');
  return cr === -1 ? trimmed : trimmed.slice(cr + 1);
}
