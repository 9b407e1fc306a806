import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileLabelSelector } from '../../../src/policy/label-selector.ts';
import { compileSelector, GLOBAL_NAMESPACE, parseSelector } from '../../../src/policy/selector.ts';

const L = { app: 'nginx', tier: 'fe', 'projectcalico.org/namespace': 'web', v: 'web-frontend' };

test('selector operators against one label set', () => {
  const cases: [string, boolean][] = [
    ['', true],
    ['all()', true],
    ["app == 'nginx'", true],
    ['app == "nginx"', true],
    ["app == 'api'", false],
    ["app != 'api'", true],
    ["missing != 'x'", true],
    ["missing == 'x'", false],
    ["app in {'api', 'nginx'}", true],
    ["app in {'api'}", false],
    ['app in {}', false],
    ["app not in {'api'}", true],
    ["missing not in {'api'}", true],
    ["app not in {'nginx'}", false],
    ['has(app)', true],
    ['has(missing)', false],
    ['!has(missing)', true],
    ['!has(app)', false],
    ["app == 'nginx' && tier == 'fe'", true],
    ["app == 'nginx' && tier == 'be'", false],
    ["app == 'x' || tier == 'fe'", true],
    ["app == 'x' || tier == 'y'", false],
    ["!(app == 'x' || tier == 'y')", true],
    ["!app == 'nginx'", false],
    ["app == 'x' || tier == 'fe' && has(missing)", false],
    ["(app == 'x' || tier == 'fe') && has(app)", true],
    ["projectcalico.org/namespace == 'web'", true],
    ["v contains 'front'", true],
    ["v starts with 'web-'", true],
    ["v ends with 'end'", true],
    ["v ends with 'web'", false],
    ['global()', false],
  ];
  for (const [text, want] of cases) assert.equal(compileSelector(text)(L), want, text);
  assert.equal(compileSelector('global()')(GLOBAL_NAMESPACE), true);
  assert.equal(compileSelector('all()')(GLOBAL_NAMESPACE), true);
});

test('precedence: && binds tighter than ||', () => {
  assert.deepEqual(parseSelector("a == '1' || b == '2' && c == '3'"), {
    op: 'or',
    args: [
      { op: '==', key: 'a', value: '1' },
      {
        op: 'and',
        args: [
          { op: '==', key: 'b', value: '2' },
          { op: '==', key: 'c', value: '3' },
        ],
      },
    ],
  });
});

test('parse errors name the field, the text and the position', () => {
  const cases: [string, string][] = [
    ["app = 'x'", 'at 4: unexpected character "="'],
    ["app == 'x", 'at 7: unterminated string'],
    ['app == x', 'at 7: expected a quoted string'],
    ["app == 'x' &&", 'at 13: expected a label key, has(), all() or ('],
    ["(app == 'x'", 'at 11: expected ")"'],
    ['has(app', 'at 7: expected ")"'],
    ['has()', 'at 4: expected a label key in has()'],
    ['app', 'at 3: expected an operator (==, !=, in, not in, contains) after "app"'],
    ["app in 'x'", 'at 7: expected "{"'],
    ["app in {'x' 'y'}", 'at 12: expected "}"'],
    ["app == 'x' app == 'y'", 'at 11: unexpected trailing input'],
    ["v starts 'x'", 'at 9: expected "with" after "starts"'],
  ];
  for (const [text, msg] of cases) {
    assert.throws(
      () => compileSelector(text, 'GlobalNetworkPolicy p.spec.selector'),
      {
        name: 'SelectorParseError',
        message: `GlobalNetworkPolicy p.spec.selector: invalid selector ${JSON.stringify(text)} ${msg}`,
      },
      text,
    );
  }
});

test('Kubernetes label selectors: empty, matchLabels, every operator, and errors', () => {
  const all = compileLabelSelector({}, 'x');
  assert.equal(all({}), true);
  const m = compileLabelSelector(
    {
      matchLabels: { app: 'nginx' },
      matchExpressions: [
        { key: 'tier', operator: 'In', values: ['fe', 'be'] },
        { key: 'env', operator: 'NotIn', values: ['dev'] },
        { key: 'app', operator: 'Exists' },
        { key: 'legacy', operator: 'DoesNotExist' },
      ],
    },
    'x',
  );
  assert.equal(m({ app: 'nginx', tier: 'fe' }), true);
  assert.equal(m({ app: 'nginx', tier: 'fe', env: 'prod' }), true);
  assert.equal(m({ app: 'nginx', tier: 'fe', env: 'dev' }), false);
  assert.equal(m({ app: 'nginx', tier: 'db' }), false);
  assert.equal(m({ app: 'nginx', tier: 'fe', legacy: '1' }), false);
  assert.equal(m({ tier: 'fe' }), false);
  assert.throws(
    () => compileLabelSelector({ matchExpressions: [{ key: 'a', operator: 'In' }] }, 'p.spec.podSelector'),
    {
      message: 'p.spec.podSelector.matchExpressions[0]: operator In needs values',
    },
  );
  assert.throws(() => compileLabelSelector({ matchLabels: { a: 1 } }, 'p.spec.podSelector'), {
    message: 'p.spec.podSelector.matchLabels.a: must be a string, got 1',
  });
  assert.throws(() => compileLabelSelector('app=x', 'p.spec.podSelector'), {
    message: 'p.spec.podSelector: must be a label selector object, got "app=x"',
  });
});
