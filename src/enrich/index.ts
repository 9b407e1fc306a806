export * from './ip.ts';
export * from './kube.ts';
export * from './resolver.ts';
export * from './source.ts';
