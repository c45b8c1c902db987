// ANSI SGR colours in a streamed log, turned into spans with classes (the page's CSP forbids
// inline style attributes; 256-colour and RGB values go through the CSSOM, which it allows).
// State carries across chunks, and an escape sequence cut in two by a chunk boundary waits for
// its end. Other escape sequences (cursor moves, titles) are dropped.
const ESC = "\u001b";
// CSI sequences, OSC sequences (ended by BEL or ST), and lone two-character escapes.
const SEQUENCE = /\u001b(?:\[([0-9;?]*)([A-Za-z])|\][^\u0007\u001b]*(?:\u0007|\u001b\\)|[@-Z\\-_])/g;

const COMPLETE = new RegExp(SEQUENCE.source, "y");

const PALETTE_256 = (n) => {
  if (n < 16) return null;
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const level = (c) => (c === 0 ? 0 : 55 + c * 40);
  return `rgb(${level(Math.floor(i / 36))},${level(Math.floor(i / 6) % 6)},${level(i % 6)})`;
};

// `target` is an element, or a sink with `append(node)` and `newline()` (then text is handed over
// line by line: a styled span never spans two lines).
export class AnsiRenderer {
  constructor(target) {
    this.target = target;
    this.pending = "";
    this.reset();
  }

  reset() {
    this.state = { bold: false, dim: false, italic: false, underline: false, fg: null, bg: null };
  }

  write(text) {
    let data = this.pending + text.replace(/\r(?!\n)/g, "");
    this.pending = "";
    const cut = data.lastIndexOf(ESC);
    COMPLETE.lastIndex = 0;
    if (cut >= 0 && !COMPLETE.test(data.slice(cut))) {
      // An unfinished sequence at the end: keep it for the next chunk (unless it is hopeless).
      if (data.length - cut < 64) {
        this.pending = data.slice(cut);
        data = data.slice(0, cut);
      }
    }
    let last = 0;
    SEQUENCE.lastIndex = 0;
    for (let m = SEQUENCE.exec(data); m !== null; m = SEQUENCE.exec(data)) {
      this.text(data.slice(last, m.index));
      if (m[2] === "m") this.sgr(m[1]);
      last = SEQUENCE.lastIndex;
    }
    this.text(data.slice(last));
  }

  text(value) {
    if (!value) return;
    if (typeof this.target.newline === "function" && value.includes("\n")) {
      const parts = value.split("\n");
      parts.forEach((part, i) => {
        if (i > 0) this.target.newline();
        this.styled(part);
      });
      return;
    }
    this.styled(value);
  }

  styled(value) {
    if (!value) return;
    const s = this.state;
    const plain = !s.bold && !s.dim && !s.italic && !s.underline && s.fg === null && s.bg === null;
    if (plain) {
      this.target.append(document.createTextNode(value));
      return;
    }
    const span = document.createElement("span");
    if (s.bold) span.classList.add("ansi-bold");
    if (s.dim) span.classList.add("ansi-dim");
    if (s.italic) span.classList.add("ansi-italic");
    if (s.underline) span.classList.add("ansi-underline");
    for (const [which, value2] of [["fg", s.fg], ["bg", s.bg]]) {
      if (value2 === null) continue;
      if (typeof value2 === "number") span.classList.add(`ansi-${which}-${value2}`);
      else if (which === "fg") span.style.color = value2;
      else span.style.backgroundColor = value2;
    }
    span.textContent = value;
    this.target.append(span);
  }

  sgr(params) {
    const codes = params === "" ? [0] : params.split(";").map((p) => (p === "" ? 0 : Number(p)));
    const s = this.state;
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) this.reset();
      else if (c === 1) s.bold = true;
      else if (c === 2) s.dim = true;
      else if (c === 3) s.italic = true;
      else if (c === 4) s.underline = true;
      else if (c === 22) s.bold = s.dim = false;
      else if (c === 23) s.italic = false;
      else if (c === 24) s.underline = false;
      else if (c >= 30 && c <= 37) s.fg = c - 30;
      else if (c >= 90 && c <= 97) s.fg = c - 90 + 8;
      else if (c === 39) s.fg = null;
      else if (c >= 40 && c <= 47) s.bg = c - 40;
      else if (c >= 100 && c <= 107) s.bg = c - 100;
      else if (c === 49) s.bg = null;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
        const n = codes[i + 2] ?? 0;
        const colour = n < 16 ? (c === 38 ? n : n % 8) : PALETTE_256(n);
        if (c === 38) s.fg = colour;
        else s.bg = colour;
        i += 2;
      } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
        const [r, g, b] = codes.slice(i + 2, i + 5).map((v) => Math.min(255, v ?? 0));
        const colour = `rgb(${r},${g},${b})`;
        if (c === 38) s.fg = colour;
        else s.bg = colour;
        i += 4;
      }
    }
  }
}
