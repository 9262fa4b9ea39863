// The pure core: parsing, naming and support rules, with no I/O.
export * from "./errors.ts";
export * from "./kernel.ts";
export * from "./os.ts";
export * from "./tag.ts";
export * from "./image.ts";
export * from "./names.ts";
export * from "./support.ts";
