// Calico's selector language (projectcalico.org/v3 `selector`, `namespaceSelector`,
// `serviceAccountSelector`): parsed once into a small AST, then compiled into a closure
// over a label map, so evaluating a selector per new connection allocates nothing.
//
// Grammar (lowest precedence first):
//   expr    := and ('||' and)*
//   and     := unary ('&&' unary)*
//   unary   := '!' unary | '(' expr ')' | 'all()' | 'global()' | 'has(' key ')'
//            | key ('==' | '!=') str | key ['not'] 'in' '{' [str (',' str)*] '}'
//            | key 'contains' str | key 'starts' 'with' str | key 'ends' 'with' str
// An empty selector is all(). `!=` and `not in` also match when the key is absent, as in
// Calico. `global()` matches only the namespace labels of a non-namespaced endpoint
// (GLOBAL_NAMESPACE below): it is meant for namespaceSelector.

export type Labels = Readonly<Record<string, string>>;
export type Matcher = (labels: Labels) => boolean;

/** The "namespace labels" of an endpoint without a namespace (host endpoint, global network set). */
export const GLOBAL_NAMESPACE: Labels = Object.freeze({});

export class SelectorParseError extends Error {
  override name = 'SelectorParseError';
}

export type SelectorAst =
  | { readonly op: 'all' }
  | { readonly op: 'global' }
  | { readonly op: 'has'; readonly key: string }
  | {
      readonly op: '==' | '!=' | 'contains' | 'starts' | 'ends';
      readonly key: string;
      readonly value: string;
    }
  | { readonly op: 'in' | 'notin'; readonly key: string; readonly values: readonly string[] }
  | { readonly op: 'not'; readonly arg: SelectorAst }
  | { readonly op: 'and' | 'or'; readonly args: readonly SelectorAst[] };

type Tok =
  | { t: 'key'; v: string; at: number }
  | { t: 'str'; v: string; at: number }
  | { t: 'sym'; v: string; at: number };

const KEY_CHAR = /[A-Za-z0-9_./-]/;

function tokenize(s: string, fail: (at: number, msg: string) => never): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    const two = s.slice(i, i + 2);
    if (two === '==' || two === '!=' || two === '&&' || two === '||') {
      out.push({ t: 'sym', v: two, at: i });
      i += 2;
      continue;
    }
    if ('!(){},'.includes(c)) {
      out.push({ t: 'sym', v: c, at: i });
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const end = s.indexOf(c, i + 1);
      if (end < 0) fail(i, 'unterminated string');
      out.push({ t: 'str', v: s.slice(i + 1, end), at: i });
      i = end + 1;
      continue;
    }
    if (KEY_CHAR.test(c)) {
      let j = i;
      while (j < s.length && KEY_CHAR.test(s[j]!)) j++;
      out.push({ t: 'key', v: s.slice(i, j), at: i });
      i = j;
      continue;
    }
    fail(i, `unexpected character ${JSON.stringify(c)}`);
  }
  return out;
}

/** Parses `text`; `where` names the field in errors (e.g. `policy web/allow-x spec.selector`). */
export function parseSelector(text: string, where = 'selector'): SelectorAst {
  const fail = (at: number, msg: string): never => {
    throw new SelectorParseError(`${where}: invalid selector ${JSON.stringify(text)} at ${at}: ${msg}`);
  };
  const toks = tokenize(text, fail);
  if (toks.length === 0) return { op: 'all' };
  let p = 0;
  const peek = (): Tok | undefined => toks[p];
  const atPos = (): number => toks[p]?.at ?? text.length;
  const isSym = (v: string): boolean => {
    const t = toks[p];
    return t !== undefined && t.t === 'sym' && t.v === v;
  };
  const expectSym = (v: string): void => {
    if (!isSym(v)) fail(atPos(), `expected ${JSON.stringify(v)}`);
    p++;
  };
  const str = (): string => {
    const t = toks[p];
    if (t === undefined || t.t !== 'str') return fail(atPos(), 'expected a quoted string');
    p++;
    return t.v;
  };
  const keyword = (w: string): boolean => {
    const t = toks[p];
    if (t !== undefined && t.t === 'key' && t.v === w) {
      p++;
      return true;
    }
    return false;
  };

  const expr = (): SelectorAst => {
    const args = [and()];
    while (isSym('||')) {
      p++;
      args.push(and());
    }
    return args.length === 1 ? args[0]! : { op: 'or', args };
  };
  const and = (): SelectorAst => {
    const args = [unary()];
    while (isSym('&&')) {
      p++;
      args.push(unary());
    }
    return args.length === 1 ? args[0]! : { op: 'and', args };
  };
  const unary = (): SelectorAst => {
    if (isSym('!')) {
      p++;
      return { op: 'not', arg: unary() };
    }
    if (isSym('(')) {
      p++;
      const e = expr();
      expectSym(')');
      return e;
    }
    const t = peek();
    if (t === undefined || t.t !== 'key') return fail(atPos(), 'expected a label key, has(), all() or (');
    p++;
    if ((t.v === 'all' || t.v === 'global') && isSym('(')) {
      p++;
      expectSym(')');
      return { op: t.v };
    }
    if (t.v === 'has' && isSym('(')) {
      p++;
      const k = peek();
      if (k === undefined || k.t !== 'key') return fail(atPos(), 'expected a label key in has()');
      p++;
      expectSym(')');
      return { op: 'has', key: k.v };
    }
    const key = t.v;
    if (isSym('==') || isSym('!=')) {
      const op = toks[p]!.v as '==' | '!=';
      p++;
      return { op, key, value: str() };
    }
    if (keyword('contains')) return { op: 'contains', key, value: str() };
    if (keyword('starts')) {
      if (!keyword('with')) fail(atPos(), 'expected "with" after "starts"');
      return { op: 'starts', key, value: str() };
    }
    if (keyword('ends')) {
      if (!keyword('with')) fail(atPos(), 'expected "with" after "ends"');
      return { op: 'ends', key, value: str() };
    }
    const negated = keyword('not');
    if (!keyword('in'))
      return fail(
        atPos(),
        `expected an operator (==, !=, in, not in, contains) after ${JSON.stringify(key)}`,
      );
    expectSym('{');
    const values: string[] = [];
    if (!isSym('}')) {
      values.push(str());
      while (isSym(',')) {
        p++;
        values.push(str());
      }
    }
    expectSym('}');
    return { op: negated ? 'notin' : 'in', key, values };
  };

  const ast = expr();
  if (p < toks.length) fail(atPos(), 'unexpected trailing input');
  return ast;
}

export const MATCH_ALL: Matcher = () => true;

/** Turns the AST into one closure per node (no interpretation loop per evaluation). */
export function compileAst(ast: SelectorAst): Matcher {
  switch (ast.op) {
    case 'all':
      return MATCH_ALL;
    case 'global':
      return (l) => l === GLOBAL_NAMESPACE;
    case 'has': {
      const k = ast.key;
      return (l) => l[k] !== undefined;
    }
    case '==': {
      const { key, value } = ast;
      return (l) => l[key] === value;
    }
    case '!=': {
      const { key, value } = ast;
      return (l) => l[key] !== value;
    }
    case 'contains': {
      const { key, value } = ast;
      return (l) => l[key]?.includes(value) === true;
    }
    case 'starts': {
      const { key, value } = ast;
      return (l) => l[key]?.startsWith(value) === true;
    }
    case 'ends': {
      const { key, value } = ast;
      return (l) => l[key]?.endsWith(value) === true;
    }
    case 'in': {
      const key = ast.key;
      const set = new Set(ast.values);
      return (l) => {
        const v = l[key];
        return v !== undefined && set.has(v);
      };
    }
    case 'notin': {
      const key = ast.key;
      const set = new Set(ast.values);
      return (l) => {
        const v = l[key];
        return v === undefined || !set.has(v);
      };
    }
    case 'not': {
      const f = compileAst(ast.arg);
      return (l) => !f(l);
    }
    case 'and': {
      const fs = ast.args.map(compileAst);
      if (fs.length === 2) {
        const [a, b] = fs as [Matcher, Matcher];
        return (l) => a(l) && b(l);
      }
      return (l) => {
        for (const f of fs) if (!f(l)) return false;
        return true;
      };
    }
    case 'or': {
      const fs = ast.args.map(compileAst);
      return (l) => {
        for (const f of fs) if (f(l)) return true;
        return false;
      };
    }
  }
}

/** Parses and compiles; throws SelectorParseError naming `where` and the text. */
export function compileSelector(text: string, where?: string): Matcher {
  return compileAst(parseSelector(text, where));
}
