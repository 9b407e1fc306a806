export * from './file.ts';
export * from './sink.ts';
export * from './stdout.ts';
