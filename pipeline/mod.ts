/**
 * The pipeline: where engine and storage meet (docs/ARCHITECTURE.md). Backup: engine stream → compress →
 * (encrypt) → segments → storage, then the manifest, last (backup.ts). Restore: per backup of the chain,
 * oldest first: segments (checked) → (decrypt) → decompress → engine (restore.ts). Every stored stream is
 * read back through one path, `openStream` (decode.ts).
 * @module
 */
export { type BackupJob, runBackup } from "./backup.ts";
export { type RestoreJob, runRestore } from "./restore.ts";
export { readSegments } from "./segment_reader.ts";
export { type StreamedSegments, streamSegments } from "./segment_stream.ts";
export {
  type DecodedStream,
  openStream,
  type OpenStreamOptions,
  readDataChunks,
  readState,
  readStateChunks,
  segmentPool,
} from "./decode.ts";
export { type BackupTimes, backupTimesJson, formatBackupTimes, newBackupTimes } from "./stats.ts";
export { BufferPool } from "./buffer_pool.ts";
export { Segmenter, SegmentWriter, StreamingSegmentWriter } from "./segment_writer.ts";
