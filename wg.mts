import * as kn from './src/index.js';
console.log(kn.backends());
kn.setBackend('webgpu');
const a = kn.tensor([1, -2, 3, 4.5]);
const b = kn.tensor([[1], [2]]);
console.log(a.add(b).toArray(), a.exp().toArray(), a.gelu().toArray());
console.log(a.cast('float16').cast('float32').toArray(), a.gt(0).toArray(), a.cast('int32').mul(3).toArray());
console.log(await a.neg().data());
