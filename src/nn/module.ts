/**
 * `Module`: a named tree of parameters, like `torch.nn.Module`. Parameter names are dotted
 * paths (`layers.0.attn.q_proj.weight`) and match the PyTorch reference and the checkpoint keys.
 *
 * @module
 */
import type { Device } from "../tensor/device.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { keep } from "../tensor/scope.ts";
import { lowbias32 } from "../core/random.ts";

/**
 * A 32-bit seed derived from a base seed and a parameter name, so each parameter gets its own stream.
 *
 * @param seed The base (model) seed.
 * @param name The parameter's dotted name.
 * @returns The derived seed, an unsigned 32-bit integer.
 *
 * @example
 * ```ts
 * import { paramSeed } from "./module.ts";
 * import assert from "node:assert/strict";
 * const s = paramSeed(1, "embed.weight");
 * assert.equal(s, paramSeed(1, "embed.weight")); // deterministic
 * assert.notEqual(s, paramSeed(1, "lm_head.weight"));
 * assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 32);
 * ```
 */
export function paramSeed(seed: number, name: string): number {
  let h = lowbias32(seed >>> 0);
  for (let i = 0; i < name.length; i++) h = lowbias32((h ^ name.charCodeAt(i)) >>> 0);
  return h;
}

/**
 * Base class of layers and models.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { Linear } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const lin = new Linear(dev, "proj", 4, 3, { seed: 1 });
 * assert.deepEqual([...lin.namedParameters().keys()], ["proj.weight"]);
 * lin.dispose();
 * ```
 */
export abstract class Module implements Disposable {
  /** The device holding the parameters. */
  readonly device: Device;
  /** Dotted path of this module (`""` for the root). */
  readonly path: string;
  #params = new Map<string, Tensor<"f32">>();
  #children = new Map<string, Module>();

  /**
   * Creates an empty module; subclasses register parameters and children in their constructors.
   *
   * @param device The device.
   * @param path Dotted path of this module in its parent (names its parameters).
   */
  constructor(device: Device, path: string) {
    this.device = device;
    this.path = path;
  }

  /** Full name of a parameter of this module. */
  protected qualify(name: string): string {
    return this.path ? `${this.path}.${name}` : name;
  }

  /**
   * Registers a trainable parameter (it survives every scope and requires grad).
   *
   * @param name Local name (e.g. `weight`).
   * @param t The tensor.
   * @returns The tensor.
   */
  protected param(name: string, t: Tensor<"f32">): Tensor<"f32"> {
    keep(t);
    t.requiresGrad = true;
    this.#params.set(name, t);
    return t;
  }

  /**
   * Registers a child module.
   *
   * @param name Local name.
   * @param m The child (its `path` should be `qualify(name)`).
   * @returns The child.
   */
  protected child<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** Creates a normal(0, std) parameter seeded by its full name. */
  protected normalParam(name: string, shape: number[], std: number, seed: number): Tensor<"f32"> {
    const full = this.qualify(name);
    return this.param(name, this.device.randn(shape, { seed: paramSeed(seed, full), std }));
  }

  /**
   * Every parameter under this module by full dotted name, in registration order.
   *
   * @returns The map.
   */
  namedParameters(): Map<string, Tensor<"f32">> {
    const out = new Map<string, Tensor<"f32">>();
    for (const [n, t] of this.#params) out.set(this.qualify(n), t);
    for (const c of this.#children.values()) {
      for (const [n, t] of c.namedParameters()) out.set(n, t);
    }
    return out;
  }

  /** All parameters. @returns The list. */
  parameters(): Tensor<"f32">[] {
    return [...this.namedParameters().values()];
  }

  /**
   * Replaces a parameter's values (loading a checkpoint). Shapes must match.
   *
   * @param name Full dotted name.
   * @param data Host values.
   */
  setParameter(name: string, data: Float32Array): void {
    const t = this.namedParameters().get(name);
    if (!t) throw new Error(`setParameter: no parameter named ${name}`);
    if (t.size !== data.length) {
      throw new Error(`setParameter: ${name} has ${t.size} elements, got ${data.length}`);
    }
    this.device.backend.write(t.storage("setParameter"), data);
  }

  /** Frees the gradients of all parameters. */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Frees all parameters. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }

  /** Frees all parameters at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
