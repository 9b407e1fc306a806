export * from './engine.ts';
export * from './evaluate.ts';
export * from './model.ts';
export * from './selector.ts';
export * from './stage.ts';
export * from './trace.ts';
export * from './types.ts';
export * from './values.ts';
