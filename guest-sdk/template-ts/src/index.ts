// Template command in TypeScript: `video_inventory` answers how many videos
// each category folder holds, and their total size; the same result as the
// Rust template (guest-sdk/template) on the same files.
import { CommandError, defineCommand, files, log, system } from "@neopro/guest-sdk";

/** The command's `data`: `{"category": "Match"}` to look at one folder only. */
interface Data {
  category?: string;
}

export const handler = defineCommand<Data>((data) => {
  const folders =
    data.category !== undefined && data.category !== null
      ? [data.category]
      : files
          .list("videos", "")
          .filter((e) => e.kind === "directory")
          .map((e) => e.name);
  const categories = [];
  let videos = 0;
  let bytes = 0;
  for (const folder of folders) {
    let entries;
    try {
      entries = files.list("videos", folder);
    } catch (e) {
      if (e instanceof CommandError && e.isNotFound()) {
        throw CommandError.notFound(`no category folder '${folder}'`);
      }
      throw e;
    }
    const found = entries.filter((e) => e.kind === "file");
    const size = found.reduce((sum, f) => sum + f.size, 0);
    videos += found.length;
    bytes += size;
    categories.push({ name: folder, videos: found.length, bytes: size });
  }
  log.info(`${videos} videos in ${categories.length} categories`);
  return {
    success: true,
    neoproVersion: system.version().version,
    videos,
    bytes,
    categories,
  };
});
