import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { compileRoutes, loadRoutesFile, parseRoutesYaml } from '../../src/bridge/routes/index.js';

const opts = { separator: '_', maxMessageBytes: 1_000_000 } as const;
const dir = mkdtempSync(join(tmpdir(), 'routes-loader-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `yaml` to a file and loads it; returns the ConfigError's problems (fails if it loads). */
function problemsOf(yaml: string, name = 'routes.yaml'): readonly string[] {
  const file = join(dir, name);
  writeFileSync(file, yaml);
  try {
    loadRoutesFile(file, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('BRIDGE_ERR_ROUTES');
    return (err as ConfigError).problems;
  }
  throw new Error('expected the routes file to be rejected');
}

function oneProblem(yaml: string): string {
  const p = problemsOf(yaml);
  expect(p, p.join('\n')).toHaveLength(1);
  return p[0] as string;
}

const rule = (extra: string, match = 'a/{x}'): string => `routes:\n  - name: r1\n    match: "${match}"\n${extra}`;

describe('loadRoutesFile: errors name file, rule index (and name) and field', () => {
  it('missing file', () => {
    const file = join(dir, 'nope.yaml');
    expect(() => loadRoutesFile(file, opts)).toThrow(/nope\.yaml: cannot read the routes file \(ENOENT\)/);
  });

  it('YAML syntax errors carry line:column', () => {
    const p = problemsOf('routes:\n  - match: a\n    match: b\n', 'dup.yaml');
    expect(p[0]).toMatch(/dup\.yaml:3:5: YAML: Map keys must be unique/);
  });

  it('document shape', () => {
    expect(oneProblem('- a\n- b\n')).toMatch(/routes\.yaml: the routes file must be a mapping/);
    expect(oneProblem('unmatched: skip\n')).toMatch(/routes\.yaml: "routes" is missing/);
    expect(oneProblem('routes: []\n')).toMatch(/routes\.yaml: routes: must list at least one rule/);
    expect(oneProblem('routes: {}\n')).toMatch(/routes: must be a list of rules/);
    expect(oneProblem('rotues: []\nroutes: [{match: a}]\n')).toMatch(/unknown field "rotues" \(did you mean "routes"\?\)/);
  });

  it('unmatched', () => {
    expect(oneProblem('unmatched: drop\nroutes: [{match: a}]\n')).toMatch(
      /routes\.yaml: unmatched: must be skip, dead_letter or \{ topic: <kafka topic> \}, got string "drop"/,
    );
    expect(oneProblem('unmatched: { topic: "a/b" }\nroutes: [{match: a}]\n')).toMatch(/unmatched\.topic: "a\/b" is not a legal Kafka topic/);
    expect(oneProblem('unmatched: { topic: "x-{badge}" }\nroutes: [{match: a}]\n')).toMatch(/unmatched\.topic: unknown variable \{badge\}/);
  });

  it.each([
    ['name', rule('').replace('name: r1', 'name: "r 1"'), /routes\[0\] \(r 1\): name: must be 1-64 letters/],
    ['name reserved', rule('').replace('name: r1', 'name: unmatched'), /routes\[0\] \(unmatched\): name: "unmatched" is reserved/],
    ['unknown field', rule('    tpoic: x\n'), /routes\[0\] \(r1\): unknown field "tpoic" \(did you mean "topic"\?\)/],
    ['match missing', 'routes:\n  - name: r1\n', /routes\[0\] \(r1\): "match" is missing/],
    ['match: # not last', rule('', 'a/#/b'), /routes\[0\] \(r1\): match: '#' must be the last level/],
    ['match: partial level', rule('', 'a/b{x}'), /routes\[0\] \(r1\): match: level 2 "b\{x\}"/],
    ['match: bad name', rule('', 'a/{1x}'), /match: level 2 "\{1x\}": a segment name is/],
    ['match: reserved name', rule('', 'a/{topic}'), /match: level 2 "\{topic\}": "topic" is a built-in/],
    ['match: duplicate name', rule('', 'a/{x}/{x}'), /match: level 3 "\{x\}": segment name "x" is used twice/],
    ['match: not a string', 'routes:\n  - name: r1\n    match: 5\n', /routes\[0\] \(r1\): match: must be a string, got number 5/],
    ['topic: unknown segment', rule('    topic: "t-{y}"\n'), /routes\[0\] \(r1\): topic: unknown variable \{y\} \(segments of the match pattern: x;/],
    ['topic: illegal constant', rule('    topic: "a b"\n'), /routes\[0\] \(r1\): topic: "a b" is not a legal Kafka topic/],
    ['topic: illegal literal', rule('    topic: "a/{x}"\n'), /topic: literal text "a\/" has characters Kafka topics cannot contain/],
    ['topic: unclosed', rule('    topic: "t-{x"\n'), /topic: template "t-\{x": unclosed '\{'/],
    ['topic: stray brace', rule('    topic: "t-x}"\n'), /topic: template "t-x\}": unmatched '\}'/],
    ['topic: empty placeholder', rule('    topic: "t-{}"\n'), /topic: empty placeholder/],
    ['topic: unknown filter', rule('    topic: "t-{x|camel}"\n'), /topic: \{x\|camel\}: unknown filter "camel"/],
    ['topic: kafka separator', rule('    topic: "{topic|kafka:/}"\n'), /topic: \{topic\|kafka:\/\}: the kafka separator must be/],
    ['topic: filter argument', rule('    topic: "t-{x|lower:1}"\n'), /filter "lower" takes no argument/],
    ['key: unquoted template', rule('    key: {x}\n'), /routes\[0\] \(r1\): key: YAML read the unquoted template \{x\} as a mapping: quote it \("\{x\}"\)/],
    ['key: empty', rule('    key: ""\n'), /routes\[0\] \(r1\): key: renders empty; write "key: null"/],
    ['key: payload on raw', rule('    key: "{payload.id}"\n'), /key: \{payload\.id\}: payload fields need "format: json"/],
    ['format', rule('    format: xml\n'), /routes\[0\] \(r1\): format: must be one of raw, envelope, json, sparkplug, avro, protobuf, json_schema, got string "xml"/],
    ['enrich on raw', rule('    enrich: { a: b }\n'), /routes\[0\] \(r1\): enrich: needs "format: json"/],
    ['enrich value', rule('    format: json\n    enrich: { a: [1] }\n'), /enrich\.a: must be a template string, number, boolean or null, got a list/],
    ['enrich __proto__', rule('    format: json\n    enrich: { __proto__: 1 }\n'), /enrich: "__proto__" cannot be a field name/],
    ['drop not a list', rule('    format: json\n    drop: a\n'), /routes\[0\] \(r1\): drop: must be a list of payload paths/],
    ['drop empty level', rule('    format: json\n    drop: [a, "b..c"]\n'), /drop\[1\]: payload path "b\.\.c" has an empty level/],
    ['require type', rule('    format: json\n    require: { a: strng }\n'), /routes\[0\] \(r1\): require\.a: unknown type "strng"/],
    ['require wildcard', rule('    format: json\n    require: { "a.*": any }\n'), /require\.a\.\*: payload path "a\.\*": '\*' is only allowed in drop paths/],
    ['require not a mapping', rule('    format: json\n    require: [a]\n'), /require: must be a mapping of payload path to type/],
    ['filter unknown test', rule('    format: json\n    filter: { a: { equal: 1 } }\n'), /routes\[0\] \(r1\): filter\.a: unknown test "equal"/],
    ['filter nested', rule('    format: json\n    filter: { any: [ { a: 1 }, { b: { in: [] } } ] }\n'), /filter\.any\[1\]\.b\.in: must be a non-empty list/],
    ['filter exists', rule('    format: json\n    filter: { not: { a: { exists: yes please } } }\n'), /filter\.not\.a\.exists: must be true or false/],
    ['filter equals object', rule('    format: json\n    filter: { a: { equals: { b: 1 } } }\n'), /filter\.a\.equals: must be a string, number, boolean or null/],
    ['filter empty', rule('    format: json\n    filter: {}\n'), /filter: a condition is a non-empty mapping/],
    ['filter on envelope', rule('    format: envelope\n    filter: { a: 1 }\n'), /filter: needs "format: json"/],
    ['headers reserved', rule('    headers: { mqtt.topic: x }\n'), /headers\.mqtt\.topic: header names starting with "mqtt\." are written by the bridge/],
    ['headers value', rule('    headers: { h: [x] }\n'), /headers\.h: must be a template string, got a list/],
  ])('%s', (_label, yaml, expected) => {
    expect(oneProblem(yaml)).toMatch(new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/routes\\.yaml: `));
    expect(oneProblem(yaml)).toMatch(expected);
  });

  it('rules without a name are labelled by index only', () => {
    expect(oneProblem('routes:\n  - match: a\n  - match: b\n    format: jsn\n')).toMatch(/routes\.yaml: routes\[1\]: format: must be one of/);
  });

  it('duplicate names', () => {
    expect(oneProblem('routes:\n  - { name: a, match: x }\n  - { name: a, match: y }\n')).toMatch(
      /routes\[1\] \(a\): name: "a" is already the name of routes\[0\]/,
    );
  });

  it('collects every problem of every rule into one error, grouped by rule', () => {
    const p = problemsOf(
      [
        'unmatched: nowhere',
        'routes:',
        '  - name: one',
        '    match: a/{x}/#/b',
        '    topic: "t-{x}"',
        '  - name: two',
        '    match: b/{id}',
        '    topic: "t-{idd}"',
        '    key: "{payload.k}"',
        '    format: json',
        '    require: { v: numbr }',
        '    filter: { v: { gt: 1 } }',
        '  - name: three',
        '    match: c',
        '    formt: json',
        '',
      ].join('\n'),
      'many.yaml',
    );
    expect(p).toHaveLength(6);
    expect(p[0]).toMatch(/many\.yaml: unmatched:/);
    expect(p[1]).toMatch(/many\.yaml: routes\[0\] \(one\): match: '#' must be the last level/);
    expect(p[2]).toMatch(/many\.yaml: routes\[1\] \(two\): topic: unknown variable \{idd\}/);
    expect(p[3]).toMatch(/many\.yaml: routes\[1\] \(two\): filter\.v: unknown test "gt"/);
    expect(p[4]).toMatch(/many\.yaml: routes\[1\] \(two\): require\.v: unknown type "numbr"/);
    expect(p[5]).toMatch(/many\.yaml: routes\[2\] \(three\): unknown field "formt" \(did you mean "format"\?\)/);
    // The error message lists them all too.
    try {
      loadRoutesFile(join(dir, 'many.yaml'), opts);
    } catch (err) {
      for (const line of p) expect((err as Error).message).toContain(line);
    }
  });

  it('compileRoutes names its source and rejects a bad maxMessageBytes', () => {
    expect(() => compileRoutes({ routes: [{ match: 'a' }] }, 'inline', { separator: '_', maxMessageBytes: 0 })).toThrow(
      /inline: maxMessageBytes must be a positive integer/,
    );
    expect(() => compileRoutes({ routes: [{ match: 'a', topic: 'x y' }] }, 'inline', opts)).toThrow(/inline: routes\[0\]: topic:/);
  });

  it('accepts x- extension keys and YAML merge keys', () => {
    const doc = parseRoutesYaml(
      ['x-common: &c { format: json, key: "{id}" }', 'routes:', '  - <<: *c', '    match: a/{id}', '    topic: t'].join('\n'),
      'merge.yaml',
    );
    const t = compileRoutes(doc, 'merge.yaml', opts);
    expect(t.routeNames).toEqual(['rule-0', 'unmatched']);
  });

  it('bounds YAML alias expansion', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]', 'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]', 'routes: [{match: a}]'].join('\n');
    expect(() => parseRoutesYaml(bomb, 'bomb.yaml')).toThrow(ConfigError);
  });
});
