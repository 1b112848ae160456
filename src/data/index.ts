// kn.data: datasets, loaders and sampling helpers.
export { Dataset, DataLoader, balancedSampleWeights, classWeights, type Batch, type DataLoaderOptions } from './loader.js';
