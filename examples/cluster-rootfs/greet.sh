#!/bin/sh
# The image's one app (LAUNCH ["greet"]): runs on master0 after every host ran init.sh.
set -eu
echo "$DEMO_GREETING $GREET_WHO $SEALER_CLUSTER from $SEALER_HOST_IP" > "/var/lib/sealer/demo/$SEALER_CLUSTER/launched"
cat "/var/lib/sealer/demo/$SEALER_CLUSTER/launched"
