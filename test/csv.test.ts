// kn.data.readCsv / writeCsv: checked against DuckDB's CSV reader and writer on the same files (quotes, separators
// and line breaks inside values, nulls, a byte-order mark, CRLF), type inference, TSV, and clear errors.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import * as A from 'apache-arrow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { column } from '../src/data/csv.js';
import { throwsKiln, tempDir } from './helpers.js';

const dir = tempDir('kiln-csv-');
const N = 500;
let duck: DuckDBConnection | null = null;
async function sql(q: string): Promise<Record<string, unknown>[]> {
  duck ??= await (await DuckDBInstance.create(':memory:')).connect();
  return (await duck.runAndReadAll(q)).getRowObjectsJS() as Record<string, unknown>[];
}

const NAMES = ['plain', 'a, b', 'say "hi"', 'two\nlines', 'café', ' padded ', '007', 'x;y\tz'];

function table(): A.Table {
  return new A.Table({
    id: A.makeVector(Int32Array.from({ length: N }, (_, i) => i * 7 - 1000)),
    x: A.vectorFromArray(
      Array.from({ length: N }, (_, i) => (i % 5 === 2 ? null : Math.sin(i) * 1000)),
      new A.Float64(),
    ),
    name: A.vectorFromArray(
      Array.from({ length: N }, (_, i) => (i % 9 === 4 ? null : NAMES[i % NAMES.length]!)),
      new A.Utf8(),
    ),
  });
}

test('kiln writes, DuckDB reads the same values; kiln reads back the same table', async () => {
  const t = table();
  const path = join(dir, 'kiln.csv');
  kn.data.writeCsv(path, t);
  const rows = await sql(`SELECT id, x, name FROM read_csv('${path}', header = true) ORDER BY id`);
  assert.is(rows.length, N);
  rows.forEach((r, i) => {
    assert.is(Number(r.id), t.getChild('id')!.get(i), `id ${i}`);
    assert.is(r.x, t.getChild('x')!.get(i), `x ${i}: a double prints and parses back exactly`);
    assert.is(r.name, t.getChild('name')!.get(i), `name ${i}`);
  });
  const back = kn.data.readCsv(path, { strings: ['name'] });
  assert.equal(
    back.schema.fields.map((f) => `${f.name}:${String(f.type)}`),
    ['id:Int32', 'x:Float64', 'name:Utf8'],
  );
  for (const c of ['id', 'x', 'name']) assert.equal([...back.getChild(c)!], [...t.getChild(c)!], c);
});

test('DuckDB writes (quotes, line breaks, nulls), kiln reads the same values', async () => {
  const path = join(dir, 'duck.csv');
  const q = `SELECT i AS id, CASE WHEN i % 4 = 1 THEN NULL ELSE i / 8 END AS ratio,
               CASE i % 3 WHEN 0 THEN 'comma, here' WHEN 1 THEN 'quote "q"' ELSE 'line' || chr(10) || 'break' END AS s,
               i % 2 = 0 AS even
             FROM range(300) t(i)`;
  await sql(`COPY (${q}) TO '${path}' (HEADER, DELIMITER ',')`);
  const want = await sql(`${q} ORDER BY id`);
  const t = kn.data.readCsv(path);
  assert.equal(
    t.schema.fields.map((f) => `${f.name}:${String(f.type)}`),
    ['id:Int32', 'ratio:Float64', 's:Utf8', 'even:Utf8'],
  );
  want.forEach((r, i) => {
    assert.is(t.getChild('id')!.get(i), Number(r.id));
    assert.is(t.getChild('ratio')!.get(i), r.ratio === null ? null : Number(r.ratio));
    assert.is(t.getChild('s')!.get(i), r.s);
    assert.is(t.getChild('even')!.get(i), String(r.even));
  });
});

test('a byte-order mark, CRLF, TSV by extension, no header, other null spellings', () => {
  const bom = join(dir, 'bom.csv');
  writeFileSync(bom, '\ufeffa,b\r\n1,x\r\n2,NA\r\n\r\n3,\r\n');
  const t = kn.data.readCsv(bom);
  assert.equal([...t.getChild('a')!], [1, 2, 3]);
  assert.equal([...t.getChild('b')!], ['x', null, null]);
  const tsv = join(dir, 'data.tsv');
  writeFileSync(tsv, 'f\tg\n1.5\ta,b\n-2e-3\t?\n');
  const u = kn.data.readCsv(tsv, { nullValues: ['?'] });
  assert.equal([...u.getChild('f')!], [1.5, -0.002]);
  assert.equal([...u.getChild('g')!], ['a,b', null]);
  const bare = join(dir, 'bare.csv');
  writeFileSync(bare, '1,2\n3,4\n');
  const v = kn.data.readCsv(bare, { header: false });
  assert.equal(
    v.schema.fields.map((f) => f.name),
    ['c0', 'c1'],
  );
  assert.equal([...v.getChild('c1')!], [2, 4]);
  // numbers people write, and what is not one (hex, a bare dot): strings
  const nums = join(dir, 'nums.csv');
  writeFileSync(nums, 'a,b,c,id\n+1,0x10,3000000000,12345678901234567891\n-2,.,4,7\n');
  const w = kn.data.readCsv(nums);
  assert.equal(
    w.schema.fields.map((f) => String(f.type)),
    ['Int32', 'Utf8', 'Float64', 'Utf8'],
  );
  assert.equal([...w.getChild('id')!], ['12345678901234567891', '7'], 'an id a double would round stays text');
  kn.data.writeCsv(join(dir, 'out.tsv'), w);
  assert.equal([...kn.data.readCsv(join(dir, 'out.tsv')).getChild('b')!], ['0x10', '.']);
});

test('float32 values are written in the fewest digits that read back as the same float32', () => {
  const f32 = Float32Array.of(0.1, 1 / 3, 1e-8, 3.4e38, -2.5, 16777217, Number.NaN);
  const path = join(dir, 'f32.csv');
  kn.data.writeCsv(path, new A.Table({ v: A.makeVector(f32) }));
  assert.equal(readFileSync(path, 'utf8').split('\n').slice(1, -1), [
    '0.1',
    '0.33333334',
    '1e-8',
    '3.4e+38',
    '-2.5',
    '16777216',
    'NaN',
  ]);
  const back = [...kn.data.readCsv(path).getChild('v')!] as (number | null)[];
  assert.ok(
    Array.from(f32.subarray(0, 6)).every((v, i) => Math.fround(back[i]!) === v),
    `${back}`,
  );
  assert.is(back[6], null, 'NaN is one of the null spellings');
});

test('one column with nulls: no row is lost to an empty line', async () => {
  const path = join(dir, 'one.csv');
  kn.data.writeCsv(path, new A.Table({ v: A.vectorFromArray([1, null, 3, null], new A.Float64()) }));
  assert.equal([...kn.data.readCsv(path).getChild('v')!], [1, null, 3, null]);
  const duckRows = await sql(`SELECT v FROM read_csv('${path}', header = true, all_varchar = true)`);
  assert.equal(
    duckRows.map((r) => r.v),
    ['1', null, '3', null],
    'DuckDB reads the same four rows',
  );
});

test('bad files and options: a FormatError naming the file and line, or an ArgumentError', () => {
  const file = (name: string, text: string | Uint8Array): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  throwsKiln(
    () => kn.data.readCsv(file('ragged.csv', 'a,b\n1,2\n3\n')),
    kn.FormatError,
    /ragged\.csv: Invalid Record Length: expect 2, got 1 on line 3/,
  );
  throwsKiln(
    () => kn.data.readCsv(file('open.csv', 'a,b\n1,"2\n')),
    kn.FormatError,
    /open\.csv: Quote Not Closed: .* at line 2/,
  );
  throwsKiln(
    () => kn.data.readCsv(file('latin1.csv', Uint8Array.of(0x61, 0x0a, 0xe9, 0x0a))),
    kn.FormatError,
    /latin1\.csv is not a CSV file: it is not UTF-8 text/,
  );
  throwsKiln(
    () => kn.data.readCsv(file('empty.csv', '')),
    kn.FormatError,
    /empty\.csv has no rows \(not even a header\)/,
  );
  throwsKiln(
    () => kn.data.readCsv(file('noname.csv', 'a,,c\n1,2,3\n')),
    kn.FormatError,
    /noname\.csv: column 2 of the header has no name/,
  );
  throwsKiln(
    () => kn.data.readCsv(file('dup.csv', 'a,b,a\n1,2,3\n')),
    kn.FormatError,
    /dup\.csv: column name "a" appears twice/,
  );
  const ok = file('ok.csv', 'a\n1\n');
  throwsKiln(() => kn.data.readCsv(ok, { delimiter: '""' }), kn.ArgumentError, /delimiter must be one character/);
  throwsKiln(() => kn.data.readCsv(ok, { strings: ['zz'] }), kn.ArgumentError, /ok\.csv has no column 'zz'; it has a/);
  throwsKiln(() => kn.data.readCsv(ok, { nullValues: 'NA' as never }), kn.ArgumentError, /nullValues must be an array/);
  throwsKiln(() => kn.data.readCsv(ok, { header: true, sep: ';' } as never), kn.ArgumentError, /sep/);
  throwsKiln(
    () => kn.data.writeCsv(join(dir, 'x.csv'), { a: 1 } as never),
    kn.ArgumentError,
    /takes an apache-arrow Table/,
  );
  // a column named like an Object.prototype member is an ordinary column
  const proto = kn.data.readCsv(file('proto.csv', '__proto__,constructor\n1,2\n'));
  assert.equal([...proto.getChild('__proto__')!], [1]);
});

test('openCsv: the same table as readCsv, a chunk of rows at a time, types settled over the whole file', async () => {
  // DuckDB's file (quoted separators and line breaks, nulls), and one whose column only turns Float64 and then
  // text after the first chunks: every chunk carries the type of the whole column
  const duck = join(dir, 'duck.csv');
  const late = join(dir, 'late.csv');
  const lines = ['n,v,s'];
  for (let i = 0; i < 250; i++) lines.push(`${i},${i === 230 ? '2.5' : i},${i === 240 ? 'x' : i % 7 === 0 ? 'NA' : i}`);
  writeFileSync(late, `${lines.join('\n')}\n`);
  for (const path of [duck, late]) {
    const whole = kn.data.readCsv(path);
    const src = await kn.data.openCsv(path);
    assert.is(src.rows, whole.numRows);
    assert.equal(String(src.schema), String(whole.schema));
    const sizes: number[] = [];
    const parts: A.Table[] = [];
    for await (const t of src.chunks({ rowsPerChunk: 64 })) {
      sizes.push(t.numRows);
      parts.push(t);
      assert.equal(String(t.schema), String(whole.schema), `a chunk of ${path} has the file's types`);
    }
    const full = Math.floor(whole.numRows / 64);
    assert.equal(sizes, [...Array<number>(full).fill(64), whole.numRows - 64 * full]);
    const joined = parts[0]!.concat(...parts.slice(1));
    for (const f of whole.schema.fields)
      assert.equal([...joined.getChild(f.name)!], [...whole.getChild(f.name)!], `${path} column ${f.name}`);
  }
  const lt = await kn.data.openCsv(late, { strings: ['n'] });
  assert.equal(
    lt.schema.fields.map((f) => `${f.name}:${String(f.type)}`),
    ['n:Utf8', 'v:Float64', 's:Utf8'],
  );
  // without a header the columns are c0, c1, ...; strings names them so
  const bare = await kn.data.openCsv(late, { header: false, strings: ['c1'] });
  assert.equal(
    [bare.rows, ...bare.schema.fields.map((f) => `${f.name}:${String(f.type)}`)],
    [251, 'c0:Utf8', 'c1:Utf8', 'c2:Utf8'],
  );
  const bareNums = await kn.data.openCsv(join(dir, 'bare.csv'), { header: false, strings: ['c1'] });
  assert.equal(
    bareNums.schema.fields.map((f) => String(f.type)),
    ['Int32', 'Utf8'],
  );
  // some columns, in the order asked; every chunk the same as the file's rows
  const picked: unknown[] = [];
  for await (const t of lt.chunks({ columns: ['v', 'n'], rowsPerChunk: 100 })) {
    assert.equal(
      t.schema.fields.map((f) => f.name),
      ['v', 'n'],
    );
    picked.push(...t.getChild('v')!);
  }
  assert.equal(picked, [...kn.data.readCsv(late).getChild('v')!]);
});

test('writeCsvStream: the same bytes as writeCsv of the joined chunks; refusals write nothing', async () => {
  const t = table();
  const whole = join(dir, 'whole.csv');
  kn.data.writeCsv(whole, t);
  const streamed = join(dir, 'streamed.csv');
  async function* chunks(): AsyncGenerator<A.Table> {
    for (const [lo, hi] of [
      [0, 100],
      [100, 100],
      [100, 377],
      [377, N],
    ] as const)
      yield t.slice(lo, hi);
  }
  assert.equal(await kn.data.writeCsvStream(streamed, chunks()), {
    bytes: readFileSync(whole).byteLength,
    rows: N,
  });
  assert.equal(readFileSync(streamed), readFileSync(whole), 'byte for byte');
  // a TSV without a header, one chunk at a time from openCsv
  const src = await kn.data.openCsv(whole, { strings: ['name'] });
  const tsv = join(dir, 'streamed.tsv');
  await kn.data.writeCsvStream(tsv, src.chunks({ rowsPerChunk: 64 }), { header: false });
  const back = kn.data.readCsv(tsv, { header: false, strings: ['c2'] });
  assert.equal([...back.getChild('c2')!], [...t.getChild('name')!]);
  assert.equal([...back.getChild('c1')!], [...t.getChild('x')!]);
  const before = readFileSync(streamed);
  const x = (name: string): A.Table => new A.Table({ [name]: A.makeVector(Float32Array.of(1, 2)) });
  const refusals: [() => unknown, typeof kn.KilnError, RegExp][] = [
    [() => [x('a'), x('b')], kn.ValidationError, /chunk 1 has columns b; the first had a/],
    [() => [x('a'), 3], kn.ArgumentError, /chunk 1 is 3, expected an apache-arrow Table/],
    [() => [], kn.ArgumentError, /the iterable gave no tables/],
    [() => 'a,b', kn.ArgumentError, /takes an iterable of apache-arrow Tables/],
    [
      function* () {
        yield x('a');
        throw new kn.FormatError('upstream failed');
      },
      kn.FormatError,
      /upstream failed/,
    ],
  ];
  for (const [make, kind, re] of refusals) {
    try {
      await kn.data.writeCsvStream(streamed, make() as never);
      assert.unreachable(`expected ${re}`);
    } catch (e) {
      assert.instance(e, kind);
      assert.match((e as Error).message, re);
    }
  }
  assert.equal(readFileSync(streamed), before, 'the file is as it was');
});

test('openCsv: bad files and options as readCsv words them; a file changed since it was opened', async () => {
  const file = (name: string, text: string | Uint8Array): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const refuses = async (f: () => Promise<unknown>, kind: typeof kn.KilnError, re: RegExp): Promise<void> => {
    try {
      await f();
    } catch (e) {
      assert.instance(e, kind);
      assert.match((e as Error).message, re);
      return;
    }
    assert.unreachable(`expected ${kind.name} ${re}`);
  };
  const all = async (path: string, opts?: kn.data.CsvChunkOptions): Promise<number> => {
    let n = 0;
    for await (const t of (await kn.data.openCsv(path)).chunks(opts)) n += t.numRows;
    return n;
  };
  await refuses(
    () => kn.data.openCsv(file('ragged2.csv', 'a,b\n1,2\n3\n')),
    kn.FormatError,
    /ragged2\.csv: Invalid Record Length: expect 2, got 1 on line 3/,
  );
  await refuses(
    () => kn.data.openCsv(file('latin2.csv', Uint8Array.of(0x61, 0x0a, 0xe9, 0x0a))),
    kn.FormatError,
    /latin2\.csv is not a CSV file: it is not UTF-8 text/,
  );
  await refuses(() => kn.data.openCsv(file('empty2.csv', '')), kn.FormatError, /empty2\.csv has no rows/);
  await refuses(() => kn.data.openCsv(join(dir, 'absent.csv')), kn.ArgumentError, /openCsv: cannot read .*absent\.csv/);
  await refuses(() => kn.data.openCsv(dir), kn.ArgumentError, /it is not a file/);
  const ok = file('ok2.csv', 'a,b\n1,2\n3,4\n5,6\n');
  await refuses(
    () => kn.data.openCsv(ok, { header: 'yes' as never }),
    kn.ArgumentError,
    /header must be true or false/,
  );
  await refuses(
    () => kn.data.openCsv(ok, { strings: ['zz'] }),
    kn.ArgumentError,
    /openCsv strings: .*has no column 'zz'/,
  );
  await refuses(() => all(ok, { columns: ['a', 'q'] }), kn.ArgumentError, /ok2\.csv has no column 'q'; it has a, b/);
  await refuses(() => all(ok, { rowsPerChunk: 0 }), kn.ArgumentError, /rowsPerChunk must be a positive integer/);
  await refuses(() => all(ok, { rows: 2 } as never), kn.ArgumentError, /rows/);
  assert.is(await all(ok, { rowsPerChunk: 2 }), 3);
  // written again after it was opened: the next read says so instead of mixing two files
  const src = await kn.data.openCsv(ok);
  writeFileSync(ok, 'a,b\n1,2\n3,4\n5,6\n7,8.5\n');
  await refuses(
    async () => {
      for await (const t of src.chunks()) void t;
    },
    kn.ValidationError,
    /ok2\.csv changed since openCsv read it/,
  );
  // removed after it was opened: the same, not a raw ENOENT
  const gone = file('gone.csv', 'a\n1\n');
  const goneSrc = await kn.data.openCsv(gone);
  rmSync(gone);
  await refuses(
    async () => {
      for await (const t of goneSrc.chunks()) void t;
    },
    kn.ValidationError,
    /gone\.csv changed since openCsv read it \(its size or time differs, or it is gone\)/,
  );
});

test.after(() => {
  duck?.closeSync();
});

test.run();

test('a text column of 2 GiB or more is refused before it is copied (int32 offsets), not wrapped', () => {
  // eight references to one 256 MiB string and a null: exactly 2 GiB of text, one byte past what int32 offsets
  // can end at; 256 MiB in memory
  const big = 'x'.repeat(2 ** 28);
  const values = Array<string | null>(9).fill(big);
  values[3] = null;
  throwsKiln(
    () => column(values, 'text'),
    kn.ValidationError,
    /a text column holds 2 GiB or more in one table \(Arrow's Utf8 offsets are int32: at most 2,147,483,647 bytes\); read the file in chunks \(kn\.data\.openCsv\)/,
  );
  // a small one: offsets over multi-byte text, a null taking no bytes
  const v = column(['ab', null, 'é€'], 'text');
  assert.equal([...v.data[0]!.valueOffsets], [0, 2, 2, 7]);
  assert.equal([...v], ['ab', null, 'é€']);
});
