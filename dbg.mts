import * as kn from './src/index.js';
process.env.KILN_WEBGPU = '1';
const run = (b: kn.BackendName) => { kn.setBackend(b); kn.seed(21); kn.rand([40000]).dispose(); return kn.randn([40000]).toFloat64Array(); };
const a = run('js'), g = run('webgpu');
let worst = 0, wi = 0;
for (let i = 0; i < a.length; i++) { const e = Math.abs(a[i]! - g[i]!); if (e > worst) { worst = e; wi = i; } }
console.log('worst', worst, wi, a[wi], g[wi]);
const bad = []; for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - g[i]!) > 1e-5) bad.push(i);
console.log(bad.length, bad.slice(0, 10).map(i => [i, a[i], g[i]]));
const ru = (b: kn.BackendName) => { kn.setBackend(b); kn.seed(11); return kn.rand([30000], { low: -2, high: 5 }).toFloat64Array(); };
const ua = ru('js'), ug = ru('webgpu');
let nd = 0, maxu = 0; for (let i = 0; i < ua.length; i++) if (Math.fround(ua[i]!) !== ug[i]) { nd++; maxu = Math.max(maxu, Math.abs(Math.fround(ua[i]!) - ug[i]!) / Math.abs(ua[i]!)); }
console.log('uniform differing', nd, 'of', ua.length, 'max rel', maxu);
