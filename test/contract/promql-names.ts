// A small PromQL scanner: which metrics (and which of their labels) an expression selects. Enough
// to check the rules and the dashboard against the metrics portcullis exports; syntax itself is
// checked by promtool. Skips strings, range selectors, Grafana variables, function and aggregation
// names, keywords and the label lists of by/without/on/ignoring/group_left/group_right.

export interface Selector {
  readonly metric: string;
  /** Label names used in the selector's matchers, e.g. {state="open"} -> ["state"]. */
  readonly labels: readonly string[];
}

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
const LABEL_LIST_MODIFIERS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'atan2',
  'inf',
  'nan',
  '@',
  'start',
  'end',
]);

const IDENT_START = /[A-Za-z_:]/;
const IDENT = /[A-Za-z0-9_:]/;

export function selectors(expr: string): Selector[] {
  const found: Selector[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < expr.length && /\s/.test(expr[i] ?? '')) i++;
  };
  const skipString = () => {
    const quote = expr[i];
    i++;
    while (i < expr.length && expr[i] !== quote) i += expr[i] === '\\' ? 2 : 1;
    i++;
  };
  const skipBalanced = (open: string, close: string) => {
    let depth = 0;
    while (i < expr.length) {
      const c = expr[i];
      if (c === '"' || c === "'" || c === '`') {
        skipString();
        continue;
      }
      if (c === open) depth++;
      if (c === close && --depth === 0) {
        i++;
        return;
      }
      i++;
    }
  };
  /** Label names of a {...} block starting at i. */
  const matcherLabels = (): string[] => {
    const labels: string[] = [];
    i++; // {
    while (i < expr.length && expr[i] !== '}') {
      skipSpace();
      const start = i;
      while (i < expr.length && IDENT.test(expr[i] ?? '')) i++;
      if (i > start) labels.push(expr.slice(start, i));
      skipSpace();
      while (i < expr.length && /[=!~]/.test(expr[i] ?? '')) i++;
      skipSpace();
      if (expr[i] === '"' || expr[i] === "'" || expr[i] === '`') skipString();
      skipSpace();
      if (expr[i] === ',') i++;
      else if (expr[i] !== '}' && i === start) i++; // malformed: never loop forever
    }
    i++; // }
    return labels;
  };

  while (i < expr.length) {
    const c = expr[i] ?? '';
    if (c === '"' || c === "'" || c === '`') {
      skipString();
    } else if (c === '[') {
      skipBalanced('[', ']');
    } else if (c === '$') {
      // Grafana variable: $name or ${name}
      i++;
      if (expr[i] === '{') skipBalanced('{', '}');
      else while (i < expr.length && /\w/.test(expr[i] ?? '')) i++;
    } else if (/[0-9.]/.test(c)) {
      while (i < expr.length && /[0-9A-Za-z._]/.test(expr[i] ?? '')) i++;
    } else if (c === '{') {
      matcherLabels(); // a selector without a metric name: none in our files
    } else if (IDENT_START.test(c)) {
      const start = i;
      while (i < expr.length && IDENT.test(expr[i] ?? '')) i++;
      const word = expr.slice(start, i);
      skipSpace();
      const next = expr[i];
      const lower = word.toLowerCase();
      if (LABEL_LIST_MODIFIERS.has(lower)) {
        if (next === '(') skipBalanced('(', ')');
      } else if (AGGREGATIONS.has(lower) || KEYWORDS.has(lower) || next === '(') {
        // aggregation, keyword or function call: its arguments are scanned as they come
      } else {
        found.push({ metric: word, labels: next === '{' ? matcherLabels() : [] });
      }
    } else {
      i++;
    }
  }
  return found;
}

/** The selector inside a Grafana `label_values(selector, label)` variable query, else the query itself. */
export function templateQueryExpr(query: string): string {
  const m = /^\s*label_values\(\s*(.*)\s*,\s*[A-Za-z_]\w*\s*\)\s*$/s.exec(query);
  return m?.[1] ?? query;
}
