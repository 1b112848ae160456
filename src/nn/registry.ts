// The layer registry: every standard layer describes itself once, next to its class (tfjs-layers'
// getConfig + registerClass): its architecture spec both ways, the parameter count an untrusted spec declares,
// and the facts model transforms need. nn/spec.ts (toSpec/fromSpec, inferInputShape), structured pruning
// and ONNX export read it; none of them keeps a list of layers. Types from files are looked up in a Map,
// never used as keys of ordinary objects.
import { ArgumentError } from '../errors.js';
import type { Module } from './module.js';
import type { LayerSpec } from './spec.js';
import type { SpecReader } from './spec_reader.js';

/** An untrusted spec object (fields not checked yet). */
export type SpecFields = Record<string, unknown>;

export interface LayerDescription<M extends Module = Module> {
  /** The spec's `type`: the class name users know the layer by. */
  readonly type: LayerSpec['type'];
  /** The layer's spec; `child` gives a contained module's spec (containers only). */
  toSpec(m: M, child: (c: Module, index: number) => LayerSpec): LayerSpec;
  /**
   * Checks the fields of an untrusted spec with the reader (which throws FormatError naming the field) and
   * returns how many parameter values the layer will allocate, so the total is bounded before anything is.
   */
  params(o: SpecFields, r: SpecReader, path: string): number;
  /** A container's child specs (checked to be a list). */
  children?(o: SpecFields, r: SpecReader, path: string): unknown[];
  /** Builds the layer from a spec whose fields `params` accepted; `child(i)` builds child i (containers). */
  fromSpec(o: SpecFields, r: SpecReader, path: string, child: (index: number) => Module): M;
  /** Keeps features/channels where they are (activations, dropout, pooling): structured pruning looks through it. */
  readonly keepsFeatures?: boolean;
  /** The per-example input size the layer fixes when it comes first (Linear and its quantized forms). */
  inputFeatures?(m: M): number;
  /** The input a model starting with this layer takes: integer ids (Embedding) rather than float32 values. */
  readonly takesIds?: boolean;
}

const byClass = new Map<abstract new (...a: never[]) => Module, LayerDescription>();
const byType = new Map<string, LayerDescription>();

/** @internal Registers a layer class and its description (once per class and type), as kiln's layers do. */
export function registerLayer<M extends Module>(cls: abstract new (...a: never[]) => M, d: LayerDescription<M>): void {
  if (byClass.has(cls) || byType.has(d.type)) throw new ArgumentError(`layer ${d.type} is registered twice`);
  byClass.set(cls, d as unknown as LayerDescription);
  byType.set(d.type, d as unknown as LayerDescription);
}

/** The description of a module's exact class (a subclass may change forward, so it has none of its own). */
export function layerOf(m: Module): LayerDescription | undefined {
  return byClass.get(m.constructor as abstract new (...a: never[]) => Module);
}

/** The description registered for a spec type, if any. */
export function layerByType(type: unknown): LayerDescription | undefined {
  return typeof type === 'string' ? byType.get(type) : undefined;
}

/** Every registered spec type, in registration order. */
export function layerTypes(): string[] {
  return [...byType.keys()];
}
