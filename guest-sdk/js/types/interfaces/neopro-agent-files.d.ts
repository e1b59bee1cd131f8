/// <reference path="./neopro-agent-types.d.ts" />
declare module 'neopro:agent/files@0.2.0' {
  /**
   * Reads a whole file (at most `max-bytes`, else `too-large`). Needs read access.
   */
  export function read(root: Root, path: string, maxBytes: bigint): Uint8Array;
  /**
   * Replaces or creates a file atomically: written to a temporary name,
   * flushed to disk, then renamed over the target, so a power cut leaves the
   * old or the new content, never half of it. Parent folders must exist.
   * Needs write access.
   */
  export function writeAtomic(root: Root, path: string, contents: Uint8Array): void;
  /**
   * Removes one file (never a directory, never recursively). Needs write access.
   */
  export function removeFile(root: Root, path: string): void;
  /**
   * Renames a file or folder within one root, replacing a file at `to`.
   * Needs write access.
   */
  export function rename(root: Root, from: string, to: string): void;
  /**
   * Lists a directory (`""` or `"."` is the root itself), sorted by name.
   * Needs read access.
   */
  export function listDir(root: Root, path: string): Array<DirEntry>;
  /**
   * Describes a path without following a final symlink; `not-found` when it
   * does not exist. Needs read access.
   */
  export function stat(root: Root, path: string): Metadata;
  /**
   * sha256 of a file's content, lower-case hex, read as a stream (any
   * size). Needs read access.
   */
  export function sha256(root: Root, path: string): string;
  /**
   * Creates a directory and its missing parents; succeeds if it exists.
   * Needs write access.
   */
  export function mkdir(root: Root, path: string): void;
  /**
   * Copies a file or a folder tree to another place, possibly in another
   * root (software backups and restores cross roots, and `rename` cannot).
   * Symlinks are copied as links, never followed; devices and FIFOs are
   * refused; `to` must not exist and its parent must. Refused before
   * writing when the copy would leave less than 5 % of the disk free.
   * Returns the bytes copied. Needs read access to `from-root` and write
   * access to `to-root`.
   */
  export function copyTree(fromRoot: Root, from: string, toRoot: Root, to: string): bigint;
  /**
   * Removes a file, link or whole folder tree, never following links
   * (restores and clean-ups of software updates). Needs write access.
   */
  export function removeTree(root: Root, path: string): void;
  /**
   * Bytes free for the agent on the filesystem holding the root. Needs
   * read access.
   */
  export function freeBytes(root: Root): bigint;
  export type Error = import('neopro:agent/types@0.2.0').Error;
  export type Root = import('neopro:agent/types@0.2.0').Root;
  /**
   * What a directory entry is. Symlinks are reported as such, not followed.
   * # Variants
   * 
   * ## `"file"`
   * 
   * ## `"directory"`
   * 
   * ## `"symlink"`
   * 
   * ## `"other"`
   */
  export type EntryKind = 'file' | 'directory' | 'symlink' | 'other';
  /**
   * Facts about one path.
   */
  export interface Metadata {
    kind: EntryKind,
    /**
     * Size in bytes (0 for directories).
     */
    size: bigint,
    /**
     * Last modification, seconds since the Unix epoch (0 when unknown).
     */
    modifiedSecs: bigint,
  }
  /**
   * One entry of a directory listing.
   */
  export interface DirEntry {
    name: string,
    kind: EntryKind,
    size: bigint,
  }
}
