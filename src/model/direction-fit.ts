/** Whether a direction file belongs to a model folder. */
import { fileError } from "../errors.js";
import type { DirectionFile } from "../formats/direction.js";
import { modelIdentity } from "./fingerprint.js";
import type { ModelFolder } from "./folder.js";

/**
 * A direction must come from this model: its width always; its architecture (model_type,
 * num_layers) and its model identity (the checkpoint it was found on) when the file records
 * them, unless `allowOtherModel`.
 */
export function checkDirectionFits(dir: DirectionFile, folder: ModelFolder, allowOtherModel = false): void {
  const s = folder.spec;
  if (dir.direction.length !== s.hiddenSize)
    throw fileError(
      dir.path,
      `direction has width ${dir.direction.length}, but ${folder.dir} has hidden size ${s.hiddenSize}: it ` +
        `comes from another model`,
    );
  if (allowOtherModel) return;
  const m = dir.metadata;
  const other = "pass --allow-other-model to use it anyway";
  if (m.model_type && m.model_type !== s.family)
    throw fileError(
      dir.path,
      `direction was found on a ${m.model_type} model, but ${folder.dir} is ${s.family}: ${other}`,
    );
  if (m.num_layers && Number(m.num_layers) !== s.numLayers)
    throw fileError(
      dir.path,
      `direction was found on a ${m.num_layers}-layer model, but ${folder.dir} has ${s.numLayers} layers: ${other}`,
    );
  if (m.model_identity && m.model_identity !== modelIdentity(folder.dir)) {
    throw fileError(
      dir.path,
      `direction was found on another checkpoint (${m.model ?? "unknown"}), not on ${folder.dir}: ${other}`,
    );
  }
}
