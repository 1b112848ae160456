// Schema validation of tabular data: every violation is reported with its row, column, value and rule.
import { ArgumentError, ValidationError, checkOptions, describe } from '../errors.js';
import { columnsOf, type Column, type TableLike } from './columns.js';
import { own } from '../records.js';

/** The rules for one column. */
export interface ColumnRule {
  /** 'float' accepts ints too; 'category' takes strings or integers listed in `categories` */
  type: 'float' | 'int' | 'bool' | 'string' | 'category';
  min?: number;
  max?: number;
  categories?: readonly (string | number)[];
  /** largest allowed fraction of missing values (null / NaN), default 0 */
  maxMissing?: number;
  /** default true */
  required?: boolean;
}

/** A schema: rules per column; extra columns are violations unless allowExtra. */
export interface Schema {
  columns: Record<string, ColumnRule>;
  allowExtra?: boolean;
}

/** One broken rule. `row` is null for column-level rules. */
export interface Violation {
  row: number | null;
  column: string;
  value: unknown;
  rule: 'required' | 'unexpected' | 'type' | 'min' | 'max' | 'category' | 'missing' | 'rows';
  message: string;
}

/** What validate returns. */
export interface ValidationReport {
  ok: boolean;
  rows: number;
  /** total number of violations (the list may be truncated to maxViolations) */
  count: number;
  violations: Violation[];
  byRule: Partial<Record<Violation['rule'], number>>;
}

function checkRule(name: string, r: ColumnRule): void {
  if (!r || typeof r !== 'object')
    throw new ArgumentError(`schema column '${name}' must be an object, got ${describe(r)}`);
  if (!['float', 'int', 'bool', 'string', 'category'].includes(r.type))
    throw new ArgumentError(
      `schema column '${name}': type must be float, int, bool, string or category, got ${describe(r.type)}`,
    );
  if (r.type === 'category' && !Array.isArray(r.categories))
    throw new ArgumentError(`schema column '${name}': a category column needs categories`);
  if (r.maxMissing !== undefined && !(r.maxMissing >= 0 && r.maxMissing <= 1))
    throw new ArgumentError(`schema column '${name}': maxMissing must be a fraction in [0, 1]`);
}

/**
 * Checks `table` against `schema`: required and unexpected columns, types, ranges, allowed categories and the
 * missing-value budget. Returns a report of every violation; with `{ throw: true }` a failing report throws a
 * ValidationError that lists the first ones.
 * @example kn.data.validate({ columns: { age: { type: 'int', min: 0, max: 130 } } }, { age: [30, -1, 200] }).count // 2
 */
export function validate(
  schema: Schema,
  table: TableLike,
  opts: { throw?: boolean; maxViolations?: number } = {},
): ValidationReport {
  checkOptions(opts, 'validate', ['throw', 'maxViolations']);
  if (!schema || typeof schema !== 'object' || !schema.columns || typeof schema.columns !== 'object') {
    throw new ArgumentError(`validate takes a schema { columns: { name: rule } }, got ${describe(schema)}`);
  }
  for (const [n, r] of Object.entries(schema.columns)) checkRule(n, r);
  const cols = columnsOf(table, 'validate');
  const max = opts.maxViolations ?? 1000;
  const violations: Violation[] = [];
  const byRule: ValidationReport['byRule'] = {};
  let count = 0;
  const add = (v: Violation): void => {
    count++;
    byRule[v.rule] = (byRule[v.rule] ?? 0) + 1;
    if (violations.length < max) violations.push(v);
  };
  const rows = cols.length ? cols[0]!.values.length : 0;
  const byName = new Map<string, Column>(cols.map((c) => [c.name, c]));
  for (const c of cols) {
    if (c.values.length !== rows)
      add({
        row: null,
        column: c.name,
        value: c.values.length,
        rule: 'rows',
        message: `column '${c.name}' has ${c.values.length} rows, expected ${rows}`,
      });
    if (own(schema.columns, c.name) === undefined && !schema.allowExtra)
      add({
        row: null,
        column: c.name,
        value: null,
        rule: 'unexpected',
        message: `column '${c.name}' is not in the schema`,
      });
  }
  for (const [name, r] of Object.entries(schema.columns)) {
    const c = byName.get(name);
    if (!c) {
      if (r.required !== false)
        add({
          row: null,
          column: name,
          value: null,
          rule: 'required',
          message: `required column '${name}' is missing`,
        });
      continue;
    }
    let missing = 0;
    const cats = r.categories ? new Set<string | number>(r.categories) : null;
    for (let i = 0; i < c.values.length; i++) {
      const v = c.values[i];
      if (v === null || v === undefined) {
        missing++;
        continue;
      }
      const typeOk =
        r.type === 'float'
          ? typeof v === 'number'
          : r.type === 'int'
            ? typeof v === 'number' && Number.isInteger(v)
            : r.type === 'bool'
              ? typeof v === 'boolean' || v === 0 || v === 1
              : r.type === 'string'
                ? typeof v === 'string'
                : typeof v === 'string' || typeof v === 'number';
      if (!typeOk) {
        add({
          row: i,
          column: name,
          value: v,
          rule: 'type',
          message: `row ${i}, column '${name}': ${describe(v)} is not of type ${r.type}`,
        });
        continue;
      }
      if (typeof v === 'number') {
        if (
          !Number.isFinite(v) &&
          (r.type === 'float' || r.type === 'int') &&
          r.min === undefined &&
          r.max === undefined
        ) {
          add({
            row: i,
            column: name,
            value: v,
            rule: 'type',
            message: `row ${i}, column '${name}': ${v} is not a finite number`,
          });
        }
        if (r.min !== undefined && v < r.min)
          add({
            row: i,
            column: name,
            value: v,
            rule: 'min',
            message: `row ${i}, column '${name}': ${v} is below the minimum ${r.min}`,
          });
        if (r.max !== undefined && v > r.max)
          add({
            row: i,
            column: name,
            value: v,
            rule: 'max',
            message: `row ${i}, column '${name}': ${v} is above the maximum ${r.max}`,
          });
      }
      if (cats && !cats.has(v as string | number)) {
        add({
          row: i,
          column: name,
          value: v,
          rule: 'category',
          message: `row ${i}, column '${name}': ${describe(v)} is not one of ${[...cats].slice(0, 10).join(', ')}`,
        });
      }
    }
    const budget = r.maxMissing ?? 0;
    if (rows > 0 && missing / rows > budget) {
      add({
        row: null,
        column: name,
        value: missing,
        rule: 'missing',
        message: `column '${name}' is ${((100 * missing) / rows).toFixed(1)}% missing (${missing} of ${rows}), over its budget of ${(100 * budget).toFixed(1)}%`,
      });
    }
  }
  const report: ValidationReport = { ok: count === 0, rows, count, violations, byRule };
  if (opts.throw && !report.ok) {
    const lines = violations.slice(0, 10).map((v) => `  - ${v.message}`);
    throw new ValidationError(
      `data does not match the schema: ${count} violation(s)\n${lines.join('\n')}${count > 10 ? `\n  ... and ${count - 10} more` : ''}`,
    );
  }
  return report;
}
