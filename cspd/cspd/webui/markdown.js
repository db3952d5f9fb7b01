// A small markdown renderer for untrusted text (messages from agents and people).
//
// It builds DOM nodes and sets only textContent, never innerHTML, so no text can
// become markup: "<script>" stays the eight characters it is.  Links keep their
// href only for http:, https: and mailto:; anything else (javascript:, data:,
// vbscript:, relative paths) is shown as plain text.  Images are shown as links.
// Covers what agents write: fenced code, headings, lists, quotes, tables, rules,
// paragraphs; inline code, bold, italics, strikethrough, links and bare URLs.
"use strict";

(function () {
  const SAFE_SCHEMES = ["http:", "https:", "mailto:"];

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function safeHref(raw) {
    const href = raw.trim();
    if (!/^(https?:\/\/|mailto:)/i.test(href)) return null;
    let url;
    try {
      url = new URL(href);
    } catch (e) {
      return null;
    }
    return SAFE_SCHEMES.includes(url.protocol) ? url.href : null;
  }

  function link(text, href) {
    const safe = safeHref(href);
    if (safe === null) return document.createTextNode(text === href ? text : `${text} (${href})`);
    const a = el("a", null, text);
    a.href = safe;
    a.rel = "noopener noreferrer nofollow";
    a.target = "_blank";
    return a;
  }

  // -- inline ----------------------------------------------------------------------

  // order matters: code first (nothing inside it is markup), then links, then emphasis
  const INLINE = [
    { re: /`([^`\n]+)`/, make: (m) => el("code", null, m[1]) },
    { re: /!?\[([^\]\n]*)\]\(([^()\s]*(?:\([^()\s]*\)[^()\s]*)*)\)/,
      make: (m) => link(m[1] || m[2], m[2]) },
    { re: /<((?:https?:\/\/|mailto:)[^>\s]+)>/, make: (m) => link(m[1], m[1]) },
    { re: /\bhttps?:\/\/[^\s<>()"']*[^\s<>()"'.,;:!?]/, make: (m) => link(m[0], m[0]) },
    { re: /\*\*(?=\S)([^\n]*?\S)\*\*/, make: (m) => wrap("strong", m[1]) },
    { re: /(?<![\w])__(?=\S)([^\n]*?\S)__(?![\w])/, make: (m) => wrap("strong", m[1]) },
    { re: /~~(?=\S)([^\n]*?\S)~~/, make: (m) => wrap("del", m[1]) },
    { re: /\*(?=[^\s*])([^*\n]*?[^\s*])\*/, make: (m) => wrap("em", m[1]) },
    { re: /(?:^|(?<=[\s(]))_(?=[^\s_])([^_\n]*?[^\s_])_(?![A-Za-z0-9])/,
      make: (m) => wrap("em", m[1]) },
  ];

  function wrap(tag, text) {
    const node = el(tag);
    inline(text, node);
    return node;
  }

  // append the inline rendering of `text` to `parent`.  Each rule's next match is kept
  // until the text before it is used up, so a long message costs a pass per rule, not
  // a pass per rule per match (a rule with no match is never run again).
  function inline(text, parent) {
    const rules = INLINE.map((rule) => ({
      rule, re: new RegExp(rule.re.source, "g" + rule.re.flags.replace("g", "")), m: undefined,
    }));
    let pos = 0;
    while (pos < text.length) {
      let best = null;
      for (const r of rules) {
        if (r.m === undefined || (r.m !== null && r.m.index < pos)) {
          r.re.lastIndex = pos;
          r.m = r.re.exec(text);
        }
        if (r.m !== null && (best === null || r.m.index < best.m.index)) best = r;
      }
      if (best === null) break;
      if (best.m.index > pos) parent.appendChild(document.createTextNode(text.slice(pos, best.m.index)));
      parent.appendChild(best.rule.make(best.m));
      pos = best.m.index + Math.max(best.m[0].length, 1);
    }
    if (pos < text.length) parent.appendChild(document.createTextNode(text.slice(pos)));
  }

  // -- blocks ----------------------------------------------------------------------

  const FENCE = /^\s{0,3}(```+|~~~+)\s*([\w+#.-]*)\s*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const QUOTE = /^\s{0,3}>\s?(.*)$/;
  const BULLET = /^(\s*)([-*+])\s+(.*)$/;
  const ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
  const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

  function splitRow(line) {
    let s = line.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
    const cells = [];
    let cell = "";
    for (let i = 0; i < s.length; i++) {
      if (s[i] === "\\" && s[i + 1] === "|") { cell += "|"; i++; continue; }
      if (s[i] === "|") { cells.push(cell.trim()); cell = ""; continue; }
      cell += s[i];
    }
    cells.push(cell.trim());
    return cells;
  }

  function isBlockStart(line, next) {
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)
      || BULLET.test(line) || ORDERED.test(line)
      || (line.includes("|") && next !== undefined && TABLE_SEP.test(next) && next.includes("-"));
  }

  function table(lines, i, parent) {
    const head = splitRow(lines[i]);
    const aligns = splitRow(lines[i + 1]).map((c) =>
      c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : "");
    const wrapNode = el("div", "md-table");
    const tbl = el("table");
    const tr = el("tr");
    head.forEach((c, k) => {
      const th = el("th");
      if (aligns[k]) th.style.textAlign = aligns[k];
      inline(c, th);
      tr.appendChild(th);
    });
    const thead = el("thead");
    thead.appendChild(tr);
    tbl.appendChild(thead);
    const body = el("tbody");
    i += 2;
    while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
      const row = el("tr");
      const cells = splitRow(lines[i]);
      for (let k = 0; k < head.length; k++) {
        const td = el("td");
        if (aligns[k]) td.style.textAlign = aligns[k];
        inline(cells[k] || "", td);
        row.appendChild(td);
      }
      body.appendChild(row);
      i++;
    }
    tbl.appendChild(body);
    wrapNode.appendChild(tbl);
    parent.appendChild(wrapNode);
    return i;
  }

  function list(lines, i, parent) {
    const first = BULLET.exec(lines[i]) || ORDERED.exec(lines[i]);
    const ordered = !BULLET.test(lines[i]);
    const indent = first[1].length;
    const node = el(ordered ? "ol" : "ul");
    if (ordered && first[2] !== "1") node.start = parseInt(first[2], 10);
    let item = null;
    let itemLines = [];
    const flush = () => {
      if (item !== null) {
        blocks(itemLines, item, true);
        node.appendChild(item);
      }
    };
    while (i < lines.length) {
      const line = lines[i];
      const m = (ordered ? ORDERED : BULLET).exec(line);
      if (m && m[1].length === indent) {
        flush();
        item = el("li");
        itemLines = [m[3]];
      } else if (line.trim() === "") {
        const next = lines[i + 1];
        if (next === undefined || (next.search(/\S/) <= indent
            && !(ordered ? ORDERED : BULLET).test(next))) break;
        itemLines.push("");
      } else if (line.search(/\S/) > indent) {
        itemLines.push(line.slice(Math.min(line.search(/\S/), indent + 4)));
      } else if (!isBlockStart(line, lines[i + 1]) && itemLines.length
                 && itemLines[itemLines.length - 1] !== "") {
        itemLines.push(line.trim()); // a lazy continuation of the item's paragraph
      } else {
        break;
      }
      i++;
    }
    flush();
    parent.appendChild(node);
    return i;
  }

  // render `lines` as blocks into `parent`; `tight` keeps a lone paragraph inline (list items)
  function blocks(lines, parent, tight) {
    let i = 0;
    const paragraphs = [];
    while (i < lines.length) {
      const line = lines[i];
      if (line.trim() === "") { i++; continue; }
      let m;
      if ((m = FENCE.exec(line))) {
        const fence = m[1];
        const code = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) code.push(lines[i++]);
        i++;
        const pre = el("pre");
        const c = el("code", null, code.join("\n"));
        if (m[2]) c.dataset.lang = m[2];
        pre.appendChild(c);
        parent.appendChild(pre);
      } else if ((m = HEADING.exec(line))) {
        const h = el(`h${Math.min(m[1].length + 2, 6)}`);
        inline(m[2], h);
        parent.appendChild(h);
        i++;
      } else if (RULE.test(line)) {
        parent.appendChild(el("hr"));
        i++;
      } else if (QUOTE.test(line)) {
        const inner = [];
        while (i < lines.length && (m = QUOTE.exec(lines[i]))) { inner.push(m[1]); i++; }
        const q = el("blockquote");
        blocks(inner, q, false);
        parent.appendChild(q);
      } else if (BULLET.test(line) || ORDERED.test(line)) {
        i = list(lines, i, parent);
      } else if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])
                 && lines[i + 1].includes("-")) {
        i = table(lines, i, parent);
      } else {
        const para = [line];
        i++;
        while (i < lines.length && lines[i].trim() !== "" && !isBlockStart(lines[i], lines[i + 1])) {
          para.push(lines[i++]);
        }
        const p = el("p");
        para.forEach((text, k) => {
          if (k > 0) p.appendChild(el("br"));
          inline(text, p);
        });
        paragraphs.push(p);
        parent.appendChild(p);
      }
    }
    if (tight && paragraphs.length === 1 && parent.firstChild === paragraphs[0]
        && parent.childNodes.length <= 2) {
      const p = paragraphs[0];
      while (p.firstChild) parent.insertBefore(p.firstChild, p);
      parent.removeChild(p);
    }
  }

  // the rendering of `text` as a DocumentFragment
  function render(text) {
    const frag = document.createDocumentFragment();
    const lines = String(text).replace(/\r\n?/g, "\n").replace(/\n+$/, "").split("\n");
    blocks(lines, frag, false);
    return frag;
  }

  window.cspMarkdown = { render, safeHref };
})();
