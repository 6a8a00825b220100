// A small Markdown renderer for model output, which is untrusted: it builds DOM nodes with
// createElement and text nodes only, so no text the model writes is ever parsed as HTML
// (`<script>` stays the text "<script>"). Links keep only http(s) and mailto addresses.
//
// Blocks: ATX headings, fenced code (``` or ~~~, unclosed fences run to the end, as a reply
// still streaming has them), blockquotes, lists (-, *, + and 1. or 1), nested by indentation),
// GitHub tables, thematic breaks, paragraphs (a newline inside one is a line break).
// Inline: code spans, **strong**, *emphasis*, ~~strikethrough~~, [links](url), bare URLs,
// backslash escapes.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
const TABLE_DIVIDER = /^ *\|? *:?-+:? *(?:\| *:?-+:? *)*\|? *$/;
const ESCAPABLE = /[\\`*_{}[\]()#+\-.!|~<>]/;
const SAFE_URL = /^(?:https?:|mailto:)/i;

/** The Markdown `text` as a DocumentFragment. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  renderBlocks(String(text).replace(/\r\n?/g, '\n').split('\n'), fragment);
  return fragment;
}

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

const isBlank = (line) => line.trim() === '';

/** Whether `line` opens a block other than a paragraph (so it ends the paragraph before it). */
function opensBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line);
}

function renderBlocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i++;
      continue;
    }
    let match = FENCE.exec(line);
    if (match) {
      i = renderFence(lines, i, match, parent);
      continue;
    }
    match = HEADING.exec(line);
    if (match) {
      const heading = el(`h${match[1].length}`);
      appendInline(heading, match[2] ?? '');
      parent.append(heading);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(el('hr'));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && !isBlank(lines[i])) {
        const inner = QUOTE.exec(lines[i]);
        quoted.push(inner ? inner[1] : lines[i]);
        i++;
      }
      const quote = el('blockquote');
      renderBlocks(quoted, quote);
      parent.append(quote);
      continue;
    }
    match = LIST_ITEM.exec(line);
    if (match) {
      i = renderList(lines, i, parent);
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && TABLE_DIVIDER.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      i = renderTable(lines, i, parent);
      continue;
    }
    const paragraph = [line];
    i++;
    while (i < lines.length && !isBlank(lines[i]) && !opensBlock(lines[i])) paragraph.push(lines[i++]);
    const p = el('p');
    paragraph.forEach((text, n) => {
      if (n > 0) p.append(el('br'));
      appendInline(p, text.trim());
    });
    parent.append(p);
  }
}

function renderFence(lines, start, match, parent) {
  const [, marker, info] = match;
  const indent = /^ */.exec(lines[start])[0].length;
  const body = [];
  let i = start + 1;
  while (i < lines.length) {
    const closing = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(lines[i]);
    if (closing && closing[1][0] === marker[0] && closing[1].length >= marker.length) {
      i++;
      break;
    }
    // Lines lose up to the fence's own indentation, as CommonMark has it.
    body.push(lines[i].replace(new RegExp(`^ {0,${indent}}`), ''));
    i++;
  }
  parent.append(codeBlock(body.join('\n'), info));
  return i;
}

/** A fenced code block: its language and a copy button above the code. */
function codeBlock(code, info) {
  const language = (info ?? '').replace(/[^\w+#.-]/g, '');
  const block = el('div', 'code-block');
  const head = el('div', 'code-head');
  const label = el('span', 'code-language');
  label.textContent = language || 'text';
  const copy = el('button', 'copy');
  copy.type = 'button';
  copy.textContent = 'Copy';
  copy.addEventListener('click', () => copyText(code, copy));
  head.append(label, copy);
  const pre = el('pre');
  const codeNode = el('code');
  if (language) codeNode.className = `language-${language}`;
  codeNode.textContent = code;
  pre.append(codeNode);
  block.append(head, pre);
  return block;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Copy failed';
  }
  setTimeout(() => {
    button.textContent = 'Copy';
  }, 1500);
}

/** A list and the items after it of the same kind and indentation, each item's lines rendered as blocks. */
function renderList(lines, start, parent) {
  const first = LIST_ITEM.exec(lines[start]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = el(ordered ? 'ol' : 'ul');
  if (ordered && Number.parseInt(first[2], 10) !== 1) list.start = Number.parseInt(first[2], 10);
  let i = start;
  while (i < lines.length) {
    const item = LIST_ITEM.exec(lines[i]);
    if (!item || item[1].length !== indent || /\d/.test(item[2]) !== ordered) break;
    const contentIndent = indent + item[2].length + 1;
    const body = [item[3] ?? ''];
    i++;
    // The item goes on over lines indented past its marker, lazy paragraph lines, and blank
    // lines followed by such an indented line.
    while (i < lines.length) {
      const next = lines[i];
      const nextIndent = /^ */.exec(next)[0].length;
      if (isBlank(next)) {
        const after = lines.slice(i + 1).find((l) => !isBlank(l));
        if (after === undefined || /^ */.exec(after)[0].length < contentIndent) break;
        body.push('');
        i++;
      } else if (nextIndent >= contentIndent || (nextIndent > indent && LIST_ITEM.test(next))) {
        body.push(next.slice(Math.min(nextIndent, contentIndent)));
        i++;
      } else if (!opensBlock(next) && !isBlank(body.at(-1))) {
        body.push(next.trim());
        i++;
      } else break;
    }
    const li = el('li');
    renderBlocks(body, li);
    // A tight item's single paragraph is its text, as Markdown renders it.
    if (li.childElementCount === 1 && li.firstElementChild.tagName === 'P')
      li.firstElementChild.replaceWith(...li.firstElementChild.childNodes);
    list.append(li);
    // Blank lines between items of one list.
    let next = i;
    while (next < lines.length && isBlank(lines[next])) next++;
    const following = next < lines.length ? LIST_ITEM.exec(lines[next]) : null;
    if (following && following[1].length === indent && /\d/.test(following[2]) === ordered) i = next;
    else break;
  }
  parent.append(list);
  return i;
}

function splitRow(line) {
  const cells = line
    .trim()
    .replace(/^\|/, '')
    .replace(/(?<!\\)\|$/, '')
    .split(/(?<!\\)\|/);
  return cells.map((cell) => cell.trim().replace(/\\\|/g, '|'));
}

function renderTable(lines, start, parent) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((cell) =>
    cell.startsWith(':') && cell.endsWith(':') ? 'center' : cell.endsWith(':') ? 'right' : cell.startsWith(':') ? 'left' : '',
  );
  const wrap = el('div', 'table-wrap');
  const table = el('table');
  const row = (cells, tag) => {
    const tr = el('tr');
    header.forEach((_, n) => {
      const cell = el(tag);
      if (aligns[n]) cell.style.textAlign = aligns[n];
      appendInline(cell, cells[n] ?? '');
      tr.append(cell);
    });
    return tr;
  };
  const thead = el('thead');
  thead.append(row(header, 'th'));
  const tbody = el('tbody');
  let i = start + 2;
  while (i < lines.length && !isBlank(lines[i]) && lines[i].includes('|')) tbody.append(row(splitRow(lines[i++]), 'td'));
  table.append(thead, tbody);
  wrap.append(table);
  parent.append(wrap);
  return i;
}

/** The inline Markdown of `text` appended to `parent`, as elements and text nodes. */
function appendInline(parent, text) {
  let plain = '';
  const flush = () => {
    if (plain) parent.append(document.createTextNode(plain));
    plain = '';
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && ESCAPABLE.test(text[i + 1] ?? '')) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === '`') {
      const run = /^`+/.exec(text.slice(i))[0];
      const end = findRun(text, run, i + run.length);
      if (end < 0) {
        plain += run;
        i += run.length;
        continue;
      }
      flush();
      const code = el('code');
      let inner = text.slice(i + run.length, end);
      if (/^ .* $/.test(inner)) inner = inner.slice(1, -1);
      code.textContent = inner;
      parent.append(code);
      i = end + run.length;
      continue;
    }
    const span = delimited(text, i);
    if (span) {
      flush();
      const node = el(span.tag);
      appendInline(node, text.slice(span.innerStart, span.innerEnd));
      parent.append(node);
      i = span.end;
      continue;
    }
    if (c === '[') {
      const link = /^\[([^\]]*)\]\(\s*<?([^\s()<>]*(?:\([^\s()<>]*\))?[^\s()<>]*)>?(?:\s+"[^"]*")?\s*\)/.exec(text.slice(i));
      if (link && SAFE_URL.test(link[2])) {
        flush();
        const a = anchor(link[2]);
        appendInline(a, link[1] || link[2]);
        parent.append(a);
        i += link[0].length;
        continue;
      }
    }
    if ((c === 'h' || c === '<') && !/[\w/]/.test(text[i - 1] ?? '')) {
      const url = /^<?(https?:\/\/[^\s<>]*[^\s<>.,;:!?'")\]])>?/.exec(text.slice(i));
      if (url && (c === 'h' || url[0].endsWith('>'))) {
        flush();
        const a = anchor(url[1]);
        a.textContent = url[1];
        parent.append(a);
        i += url[0].length;
        continue;
      }
    }
    plain += c;
    i++;
  }
  flush();
}

/** The next run of backticks exactly as long as `run`, from `from`; -1 when there is none. */
function findRun(text, run, from) {
  let at = text.indexOf(run, from);
  while (at >= 0) {
    const before = text[at - 1];
    const after = text[at + run.length];
    if (before !== '`' && after !== '`') return at;
    at = text.indexOf(run, at + 1);
  }
  return -1;
}

const SPANS = [
  { marker: '**', tag: 'strong' },
  { marker: '__', tag: 'strong', word: true },
  { marker: '~~', tag: 'del' },
  { marker: '*', tag: 'em' },
  { marker: '_', tag: 'em', word: true },
];

/** A `**strong**`, `*em*` or `~~del~~` span opening at `i`: the opener hugs its text, so does the closer. */
function delimited(text, i) {
  for (const { marker, tag, word } of SPANS) {
    if (!text.startsWith(marker, i)) continue;
    // `_` and `__` only at word boundaries, so snake_case_names stay as written.
    if (word && /\w/.test(text[i - 1] ?? '')) continue;
    const innerStart = i + marker.length;
    if (/\s/.test(text[innerStart] ?? ' ') || text[innerStart] === marker[0]) continue;
    let end = text.indexOf(marker, innerStart + 1);
    while (end >= 0) {
      const hugs = !/\s/.test(text[end - 1]);
      const single = marker.length > 1 || (text[end + 1] !== marker && text[end - 1] !== marker);
      const boundary = !word || !/\w/.test(text[end + marker.length] ?? '');
      if (hugs && single && boundary) return { tag, innerStart, innerEnd: end, end: end + marker.length };
      end = text.indexOf(marker, end + 1);
    }
  }
  return null;
}

function anchor(href) {
  const a = el('a');
  a.setAttribute('href', href);
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  return a;
}
