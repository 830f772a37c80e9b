#!/usr/bin/env bash
# Embed a corpus with relstitch as a Slurm job array: array task I embeds shard I/N.
#
# relstitch reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT itself, so
# the command needs no --shard. A requeued or resubmitted task resumes from the progress relstitch
# keeps beside its output. Submit the merge to run after the whole array:
#
#   jobid=$(sbatch --parsable deploy/slurm-array.sh)
#   sbatch --dependency=afterok:$jobid --wrap \
#     'relstitch merge out/part-*.safetensors --output out/corpus.safetensors'
#
#SBATCH --job-name=relstitch-embed
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --requeue
#SBATCH --output=logs/embed-%A_%a.log
set -euo pipefail
mkdir -p out
relstitch embed --model all-MiniLM-L6-v2 --input corpus.jsonl --id-field id \
    --threads "${SLURM_CPUS_PER_TASK:-4}" \
    --output "out/part-${SLURM_ARRAY_TASK_ID}.safetensors"
