// Knowledge distillation (Hinton et al. 2015): a student trained on the teacher's softened class probabilities
// as well as the labels, with loss alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) +
// (1 - alpha) * crossEntropy(student, labels). The T^2 keeps the soft term's gradients on the scale of the hard
// term's as T changes.
import { noGrad } from '../autograd/tape.js';
import { ArgumentError, ShapeError, checkOptions, describe } from '../errors.js';
import { crossEntropy } from '../nn/loss.js';
import { Module, inEvalMode } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * A Module that trains `student` against `teacher`: in training mode `forward` runs the teacher too (without
 * gradients, in eval mode) and remembers its logits for `loss`; in eval mode it is the student alone and `loss` is
 * plain cross-entropy. Its parameters are the student's; the teacher is never updated or saved with it.
 */
export class Distiller extends Module {
  readonly student: Module;
  readonly teacher: Module;
  readonly temperature: number;
  readonly alpha: number;
  private last: { out: Tensor; teacher: Tensor } | null = null;

  constructor(teacher: Module, student: Module, opts: { temperature?: number; alpha?: number } = {}) {
    super();
    checkOptions(opts, 'Distiller', ['temperature', 'alpha']);
    for (const [m, what] of [
      [teacher, 'teacher'],
      [student, 'student'],
    ] as const)
      if (!(m instanceof Module))
        throw new ArgumentError(`distill: ${what} must be a kn.nn.Module, got ${describe(m)}`);
    const t = opts.temperature ?? 4,
      a = opts.alpha ?? 0.9;
    if (typeof t !== 'number' || !(t > 0) || !Number.isFinite(t))
      throw new ArgumentError(`distill: temperature must be a positive number, got ${describe(opts.temperature)}`);
    if (typeof a !== 'number' || !(a >= 0 && a <= 1))
      throw new ArgumentError(`distill: alpha must be in [0, 1], got ${describe(opts.alpha)}`);
    this.student = this.registerModule('student', student);
    this.teacher = teacher;
    this.temperature = t;
    this.alpha = a;
    this.loss = this.loss.bind(this);
  }

  forward(x: Tensor): Tensor {
    const out = this.student.call(x);
    if (this.training) {
      this.last = { out, teacher: inEvalMode(this.teacher, () => noGrad(() => this.teacher.call(x))) };
    } else this.last = null;
    return out;
  }

  /** The distillation loss of the student's output (from the last training forward) against the labels. */
  loss(out: Tensor, labels: Tensor): Tensor {
    const hard = crossEntropy(out, labels);
    const last = this.last;
    if (last === null || last.out !== out || this.alpha === 0) return hard;
    const t = last.teacher;
    if (t.ndim !== 2 || t.shape[0] !== out.shape[0] || t.shape[1] !== out.shape[1])
      throw new ShapeError(`distill: the teacher's logits [${t.shape}] do not match the student's [${out.shape}]`);
    const T = this.temperature;
    const logS = out.div(T).logSoftmax(1);
    const logT = t.div(T).logSoftmax(1);
    const kl = logT.exp().mul(logT.sub(logS)).sum().div(out.shape[0]!);
    return kl.mul(this.alpha * T * T).add(hard.mul(1 - this.alpha));
  }
}

/**
 * Distils `teacher` into `student`: returns a Distiller to pass to fit with its own loss,
 * `fit(d, { loss: d.loss, optimizer: new kn.optim.Adam(student.parameters()), ... })`; afterwards use `student`.
 * @example kn.train.distill(new kn.nn.Linear(4, 3), new kn.nn.Linear(4, 3), { temperature: 2 }).temperature // 2
 */
export function distill(
  teacher: Module,
  student: Module,
  opts: { temperature?: number; alpha?: number } = {},
): Distiller {
  checkOptions(opts, 'distill', ['temperature', 'alpha']);
  return new Distiller(teacher, student, opts);
}
