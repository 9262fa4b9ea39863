#!/usr/bin/env bats
# The DaemonSet's startup probe and preStop hook.

load helpers

setup() { setup_fake_root; }

READY() { echo "${RUN_DIR}/validations/.driver-ctr-ready"; }

@test "startup fails while the nvidia module is not loaded" {
  run "$PROBE" startup
  [ "$status" -eq 1 ]
  [[ $output == *"nvidia module is not loaded"* ]]
  [ ! -e "$(READY)" ]
  [ ! -s "$STUB_LOG" ]
}

@test "startup fails, showing nvidia-smi's output, when nvidia-smi fails" {
  loaded_module nvidia 0
  export STUB_FAIL_nvidia_smi=1
  run "$PROBE" startup
  [ "$status" -eq 1 ]
  [[ $output == *"nvidia-smi failed"*"failing as the test asked"* ]]
  [ ! -e "$(READY)" ]
}

@test "startup marks the driver ready once the module is loaded and nvidia-smi works" {
  loaded_module nvidia 0
  run "$PROBE" startup
  [ "$status" -eq 0 ]
  [ -e "$(READY)" ]
  [ "$(calls)" = nvidia-smi ]
}

@test "prestop withdraws the ready mark" {
  mkdir -p "${RUN_DIR}/validations"
  touch "$(READY)"
  run "$PROBE" prestop
  [ "$status" -eq 0 ]
  [ ! -e "$(READY)" ]
}
