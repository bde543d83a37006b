#!/usr/bin/env bash
# Mutation check of the code that carries the method (not part of CI; CPU-heavy, see README).
#   bash scripts/mutation_check.sh                     # every group below, one after another
#   bash scripts/mutation_check.sh pseudo_label data   # some groups
# mutmut (pinned in setup.py's `dev` extra, configured in setup.cfg) copies the project
# into mutants/, changes one thing at a time in the functions of a group, runs the fast
# tests that reach it, and this script prints, per group, the mutants, how many the tests
# killed, and every survivor as a diff.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup_env.sh
.venv/bin/python -m pip install -q -e ".[dev]"

# One thread everywhere and MXNet's synchronous engine: mutmut's workers are forked.
export MXNET_ENGINE_TYPE=NaiveEngine OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

P=issegm.engine.postprocess T=issegm.engine.training L=issegm.phases.labelling
declare -A GROUP=(
  [pseudo_label]='issegm.method.thresholds.*'
  [pseudo_labelling]="$L.*_Round*pass_one_done__* $L.*_Round*pass_one__* $L.*_Round*_read__* $L.*_Round*_launch__* $L.*_Round*pass_two__* $L.*_PassOneTotals* $L.x_generate_pseudo_labels__* $L.x_single_scale__* $L.x__complete_marker__* $L.x__prepare_outputs__* $L.x__restore_round__* $L.x__merge_pass1__* $L.x__round_thresholds__* $L.x__scores__* $L.x__finish_round__*"
  [postprocess]="$P.x__bicubic__* $P.x__sinc__* $P.x__lanczos__* $P.x__bilinear__* $P.x__coefficients__* $P.x_resample_matrix__* $P.x_resample_support__* $P.x__upsample_matrices__* $P.x__band__* $P.x_upsample_window__* $P.x__upsample_one__* $P.x_upsample_probs__* $P.x__check_prior__* $P.x_apply_prior__* $P.*HostOps* $P.*Pending* $P.*Source* $P.*Postprocessor* util.parallel.x_class_argmax__*"
  [device]="$P.*DeviceOps*"
  [data]='issegm.engine.iterator.*SampleReader*_scale__* issegm.engine.iterator.*SampleReader*_mine_centre__* issegm.engine.iterator.*SampleReader*make__* issegm.engine.iterator.*SampleReader*batch__* issegm.engine.iterator.*SampleReader*batch_and_findings__* issegm.engine.iterator.*FileIter*__init____* issegm.engine.iterator.*FileIter*reset__* issegm.engine.iterator.*FileIter*next__* issegm.engine.iterator.x_select_source_indices__* issegm.engine.iterator.x_parse_split_file__* issegm.engine.iterator.x_make_divisible__*'
  [training]="$T.x_train__* $T.x__resume_point__* $T.x__initialised_module__* $T.x__init_sgd__* $T.x__train_epoch__* $T.x__end_epoch__* $T.x__batches_per_epoch__* $T.x__save_epoch__* $T.x__job_loss__* $T.x__seed__* $T.x__device_seed__* $T.x_seed_devices_per_step__* $T.*JobStep*"
  [resume]="$T.x_save_checkpoint__* $T.x_load_states__* $T.x__restore_states__* $T.x_last_checkpoint__* $T.x_make_lr_scheduler__* $T.*Scheduler* $T.*NllMetric*"
  [rounds]='issegm.phases.rounds.x_round_schedule__* issegm.phases.rounds.x_val_argv__* issegm.phases.rounds.x_train_argv__* issegm.phases.rounds.x__flags__* issegm.phases.rounds.x_py2_str__* issegm.phases.retraining.x_select_source__* issegm.phases.retraining.x_training_samples__* issegm.phases.retraining.x__selected_source__* issegm.phases.retraining.x__pseudo_labelled_targets__* issegm.phases.retraining.x__load_mining__* issegm.phases.retraining.x__train_options__* issegm.phases.retraining.x_make_dataiter__*'
  [metrics]='issegm.engine.metrics.x_confusion_counts__* issegm.engine.metrics.*ConfusionMatrix* issegm.engine.metrics.x_format_row__*'
  [inference]='issegm.engine.inference.*'
  [image]='util.image.x_interp_method__* util.image.x_resize__* util.image.x_longer_side_shape__* util.image.x_normalize__*'
)
ORDER=(pseudo_label pseudo_labelling postprocess device data training resume rounds metrics inference image)
if [ $# -gt 0 ]; then ORDER=("$@"); fi
for g in "${ORDER[@]}"; do
  [ -n "${GROUP[$g]:-}" ] || { echo "unknown group $g (known: ${!GROUP[*]})" >&2; exit 2; }
done

# A fresh copy (mutmut does not refresh files it copied before); MUTATION_KEEP=1 reuses the
# copy, the test-coverage map and the verdicts of a run on the same code and tests.
[ "${MUTATION_KEEP:-0}" = 1 ] || rm -rf mutants
mkdir -p mutants
# The whole report also goes to mutants/report.txt; its survivors are sorted by kind at the end.
exec > >(tee mutants/report.txt) 2>&1
for g in "${ORDER[@]}"; do
  echo "== $g: mutmut run ${GROUP[$g]}"
  start=$(date +%s)
  # shellcheck disable=SC2086
  .venv/bin/mutmut run ${GROUP[$g]} > "mutants/run_$g.log" 2>&1 || { tail -20 "mutants/run_$g.log"; exit 1; }
  echo "   $(( $(date +%s) - start )) s"
  .venv/bin/mutmut results --all true > "mutants/results_$g.txt" 2>&1
  # shellcheck disable=SC2086
  .venv/bin/python - "mutants/results_$g.txt" ${GROUP[$g]} <<'PY'
import collections
import fnmatch
import subprocess
import sys

path, globs = sys.argv[1], sys.argv[2:]
status = {}
for line in open(path, encoding='utf-8'):
    name, _, state = line.strip().rpartition(': ')
    if name and any(fnmatch.fnmatch(name, g) for g in globs):
        status[name] = state
counts = collections.Counter(status.values())
print('   %d mutants: %s' % (len(status), ', '.join('%s %d' % kv for kv in sorted(counts.items()))))
for name in sorted(n for n, s in status.items() if s not in ('killed', 'timeout')):
    diff = subprocess.run(['.venv/bin/mutmut', 'show', name], capture_output=True, text=True).stdout
    lines = [l for l in diff.splitlines() if l[:1] in '-+' and l[:3] not in ('---', '+++')]
    print('   %s [%s]' % (name, status[name]))
    for l in lines:
        print('      ' + l)
PY
done

echo '== survivors by kind (scripts/mutation_kinds.py mutants/report.txt --other lists the rest)'
.venv/bin/python scripts/mutation_kinds.py mutants/report.txt
