/**
 * Python's `time.strftime` for the codes chat templates use (`strftime_now("%d %b %Y")` in
 * Llama 3.1/3.2, Granite, ...), in local time with the C locale's English names, as
 * `datetime.now().strftime` gives in transformers.
 *
 * Supported: %Y %y %m %d %e %j %H %I %M %S %p %a %A %b %B %%. Other codes are kept as written,
 * as glibc does.
 *
 * This function must stay self-contained (no reference to anything outside its body): the
 * render worker is built from its source text (see `render-sandbox.ts`).
 */
export function strftime(date: Date, format: string): string {
  const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
  const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
  const pad = (value: number, width: number, fill: string): string => String(value).padStart(width, fill);

  return format.replace(/%([a-zA-Z%])/g, (token: string, code: string): string => {
    const day = DAYS[date.getDay()] ?? '';
    const month = MONTHS[date.getMonth()] ?? '';
    const hours = date.getHours();
    switch (code) {
      case 'Y':
        return String(date.getFullYear());
      case 'y':
        return pad(date.getFullYear() % 100, 2, '0');
      case 'm':
        return pad(date.getMonth() + 1, 2, '0');
      case 'd':
        return pad(date.getDate(), 2, '0');
      case 'e':
        return pad(date.getDate(), 2, ' ');
      case 'j': {
        // Day of the year from calendar fields, so daylight-saving shifts cannot skew it.
        const start = Date.UTC(date.getFullYear(), 0, 1);
        const today = Date.UTC(date.getFullYear(), date.getMonth(), date.getDate());
        return pad((today - start) / 86_400_000 + 1, 3, '0');
      }
      case 'H':
        return pad(hours, 2, '0');
      case 'I':
        return pad(hours % 12 === 0 ? 12 : hours % 12, 2, '0');
      case 'M':
        return pad(date.getMinutes(), 2, '0');
      case 'S':
        return pad(date.getSeconds(), 2, '0');
      case 'p':
        return hours < 12 ? 'AM' : 'PM';
      case 'a':
        return day.slice(0, 3);
      case 'A':
        return day;
      case 'b':
        return month.slice(0, 3);
      case 'B':
        return month;
      case '%':
        return '%';
      default:
        return token;
    }
  });
}
