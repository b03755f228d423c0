// types of bin/dist-stamp.js (plain JavaScript: the bin loads it before it knows which tree to run)
export declare const STAMP: string;
export declare function sourceHash(root: string): string;
export declare function distIsCurrent(root: string): boolean;
export declare function writeStampHash(root: string, hash: string): void;
