import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// The reference the code cites lives in the repository (docs/): every section a comment cites
// as `docs/PAGE.md §N` is a `## N.` heading of that page, and nothing cites a document outside
// the repository. A `§` is always part of a citation whose source is named: a docs page, an RFC,
// or the W3C Trace Context specification.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SECTION = '\u00a7'; // written escaped, so that this file's own text holds no bare one
const NUMBER = String.raw`\d+(?:\.\d+)*`;
/** `SOURCE §N`, then `, §M` / `and §M` / `–§M` for more sections of the same source. */
const CITATION = new RegExp(
  String.raw`(?<source>docs/[\w-]+\.md|\[[^\]\n]*\]\((?<link>[\w./-]+\.md)\)|RFC \d{3,5}|W3C Trace Context) ${SECTION}(?<first>${NUMBER})(?<more>(?:(?:, |,? and |–)${SECTION}${NUMBER})*)`,
  'g',
);
const CODE_DIRS = ['src', 'test', 'bench', 'scripts'];
const TEXT = /\.(?:ts|js|mjs|cjs|sh|ya?ml|json|html|css|md)$/;

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules') continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else if (TEXT.test(name)) out.push(path);
  }
  return out;
}

/** The `## N.` section numbers of a docs page. */
function sectionsOf(page: string): Set<string> {
  return new Set([...readFileSync(page, 'utf8').matchAll(/^## (\d+)\. /gm)].map((m) => m[1] ?? ''));
}

interface Finding {
  readonly file: string;
  readonly line: number;
  readonly text: string;
}

/** Every cited docs section that does not exist, and every `§` outside a citation, in one file. */
function check(file: string): { missing: Finding[]; uncited: Finding[]; docs: number } {
  const text = readFileSync(file, 'utf8');
  const lineOf = (at: number): number => text.slice(0, at).split('\n').length;
  const covered = new Set<number>();
  const missing: Finding[] = [];
  let docs = 0;
  for (const m of text.matchAll(CITATION)) {
    const g = m.groups ?? {};
    for (let i = m.index; i < m.index + m[0].length; i++) covered.add(i);
    const source = g.source ?? '';
    const target = source.startsWith('docs/') ? join(ROOT, source) : g.link !== undefined ? resolve(dirname(file), g.link) : null;
    if (target === null) continue;
    docs++;
    const at = { file: relative(ROOT, file), line: lineOf(m.index), text: m[0] };
    if (!existsSync(target)) {
      missing.push(at);
      continue;
    }
    const have = sectionsOf(target);
    const numbers = [g.first ?? '', ...[...(g.more ?? '').matchAll(new RegExp(`${SECTION}(${NUMBER})`, 'g'))].map((n) => n[1] ?? '')];
    for (const n of numbers) if (!have.has(n)) missing.push({ ...at, text: `${m[0]} (no "## ${n}." in ${relative(ROOT, target)})` });
  }
  const uncited: Finding[] = [];
  // on a docs page, a bare §N is a section of the page itself
  const own = dirname(file) === join(ROOT, 'docs') ? sectionsOf(file) : null;
  for (let i = text.indexOf(SECTION); i >= 0; i = text.indexOf(SECTION, i + 1)) {
    if (covered.has(i)) continue;
    const at = { file: relative(ROOT, file), line: lineOf(i), text: text.slice(Math.max(0, i - 40), i + 10).replace(/\s+/g, ' ') };
    const n = /^\d+/.exec(text.slice(i + 1))?.[0];
    if (own === null || n === undefined) uncited.push(at);
    else if (!own.has(n)) missing.push(at);
  }
  return { missing, uncited, docs };
}

const show = (f: readonly Finding[]): string => f.map((x) => `${x.file}:${x.line}: ${x.text}`).join('\n');

describe('references the code cites', () => {
  // this file describes the citation rule, in its own words: it is not held to it
  const codeFiles = CODE_DIRS.flatMap((d) => filesUnder(join(ROOT, d))).filter((f) => f !== fileURLToPath(import.meta.url));
  const docFiles = [join(ROOT, 'README.md'), ...filesUnder(join(ROOT, 'docs'))];

  it('cites only docs sections that exist (docs/PAGE.md §N is a "## N." heading of that page)', () => {
    const results = codeFiles.map(check);
    assert.ok(results.reduce((n, r) => n + r.docs, 0) >= 60, 'the code cites docs/ (a test that finds nothing proves nothing)');
    const missing = results.flatMap((r) => r.missing);
    assert.equal(missing.length, 0, `cited sections that do not exist:\n${show(missing)}`);
  });

  it('writes every § as part of a citation that names its source (a docs page, an RFC, W3C Trace Context)', () => {
    const uncited = codeFiles.flatMap((f) => check(f).uncited);
    assert.equal(uncited.length, 0, `a § with no named source:\n${show(uncited)}`);
  });

  it('points to no document outside the repository', () => {
    const outside = /\bCONTRACT(?:\.md)?\b|\/work\/shared|\b(?:STYLE|BACKGROUND|ENGINE-NOTES)\.md\b/;
    const hits: Finding[] = [];
    for (const file of [...codeFiles, ...docFiles]) {
      readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
        if (outside.test(line)) hits.push({ file: relative(ROOT, file), line: i + 1, text: line.trim().slice(0, 120) });
      });
    }
    assert.equal(hits.length, 0, `references to documents outside the repository:\n${show(hits)}`);
  });

  it('keeps the README and the docs pages citing sections of docs pages that exist', () => {
    const results = docFiles.map(check);
    const missing = results.flatMap((r) => r.missing);
    assert.equal(missing.length, 0, `cited sections that do not exist:\n${show(missing)}`);
    const uncited = results.flatMap((r) => r.uncited);
    assert.equal(uncited.length, 0, `a § with no named source:\n${show(uncited)}`);
  });

  it('numbers each docs page\'s sections 1, 2, 3… in order, so a citation keeps its meaning', () => {
    for (const page of filesUnder(join(ROOT, 'docs')).filter((f) => f.endsWith('.md') && !f.endsWith('README.md'))) {
      const numbers = [...readFileSync(page, 'utf8').matchAll(/^## (\d+)\. /gm)].map((m) => Number(m[1]));
      assert.ok(numbers.length > 0, `${relative(ROOT, page)} has numbered sections`);
      assert.deepEqual(numbers, numbers.map((_, i) => i + 1), relative(ROOT, page));
    }
  });
});
