import type { DeadLetterReason } from '../types.js';

/**
 * A run-time failure while applying a rule to one message. Returned, never thrown: the hot
 * path must not pay for exceptions, and `Transform.apply` must never throw.
 */
export class Fail {
  constructor(
    readonly reason: DeadLetterReason,
    /** Short and human: a field name or a type, never payload content. */
    readonly detail: string,
  ) {}
}

/** Marks "this payload path does not exist" (distinct from a JSON null). */
export const MISSING: unique symbol = Symbol('missing');

/**
 * Collects load-time problems so that the loader can report them all at once, each naming
 * where it comes from: `<file>: routes[2] (cp-events): filter.any[1].message: <what is wrong>`.
 */
export class Problems {
  private constructor(
    private readonly list: string[],
    /** File, then rule: "routes.yaml: routes[2] (cp-events)". */
    private readonly head: string,
    /** Field path inside the head: "filter.any[1].message"; '' for the head itself. */
    private readonly field: string,
  ) {}

  /** A collector for one source (file name or label). */
  static root(source: string): Problems {
    return new Problems([], source, '');
  }

  /** A collector for a new section of the head, e.g. one rule ("routes[2] (cp-events)"). */
  scope(label: string): Problems {
    return new Problems(this.list, this.field === '' ? `${this.head}: ${label}` : `${this.head}: ${this.field}${label}`, '');
  }

  /** A collector for a field below the current one ("topic", "[1]", "any"). */
  at(field: string | number): Problems {
    const f = typeof field === 'number' ? `[${field}]` : field;
    const joined = this.field === '' ? f.replace(/^\./, '') : f.startsWith('[') ? `${this.field}${f}` : `${this.field}.${f}`;
    return new Problems(this.list, this.head, joined);
  }

  add(message: string): void {
    this.list.push(this.field === '' ? `${this.head}: ${message}` : `${this.head}: ${this.field}: ${message}`);
  }

  get count(): number {
    return this.list.length;
  }

  get all(): readonly string[] {
    return this.list;
  }
}
