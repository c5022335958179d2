#!/bin/sh
# pacemaker-qos-hook.sh: qoscntrlr failover/recovery hook for a Pacemaker cluster.
#
# Install it as, e.g., /usr/local/lib/qoscntrlr/pacemaker-qos-hook.sh (mode 0755) and
# set in /etc/qoscntrlr/dcontroller.ini:
#     QOS_FAILOVER_HOOK=/usr/local/lib/qoscntrlr/pacemaker-qos-hook.sh
#     QOS_RECOVERY_HOOK=/usr/local/lib/qoscntrlr/pacemaker-qos-hook.sh
# together with the location rule in pacemaker-location.xml.
#
# qoscntrlr runs the hook on a smart kill (right after the trigger file and the
# readiness/agent endpoints, before diagnostics) with QOS_EVENT=failover, and again with
# QOS_EVENT=recovery once the restarted server is READY and probing well. It also passes
# QOS_REASON, QOS_SERVER_NAME, QOS_INCIDENT_ID and QOS_TRIGGER_FILE. qoscntrlr runs hooks
# asynchronously with a time limit; nothing here waits for the cluster to act.
#
# The hook sets the transient node attribute qos-failover (lifetime: until the node
# reboots, kept by pacemaker-attrd) to 1 on failover and 0 on recovery for this node.
#
# Environment (all optional):
#     QOS_PACEMAKER_ATTRIBUTE  attribute name                  [qos-failover]
#     QOS_PACEMAKER_NODE       node name in the cluster        [the local node]
#     CIB_file                 work on an offline CIB file (testing with crm_simulate):
#                              pacemaker-attrd is not involved then, so the same
#                              transient attribute is written with crm_attribute; that
#                              needs QOS_PACEMAKER_NODE.
set -eu

attribute=${QOS_PACEMAKER_ATTRIBUTE:-qos-failover}
case "${QOS_EVENT:-}" in
    failover) value=1 ;;
    recovery) value=0 ;;
    *)
        echo "pacemaker-qos-hook: QOS_EVENT must be failover or recovery, got '${QOS_EVENT:-}'" >&2
        exit 2
        ;;
esac

echo "pacemaker-qos-hook: $QOS_EVENT for ${QOS_SERVER_NAME:-?} (${QOS_REASON:-no reason}, incident ${QOS_INCIDENT_ID:-?}): $attribute=$value"

if [ -n "${CIB_file:-}" ]; then
    node=${QOS_PACEMAKER_NODE:?pacemaker-qos-hook: CIB_file is set, so QOS_PACEMAKER_NODE must name the node}
    exec crm_attribute --node "$node" --name "$attribute" --update "$value" --lifetime reboot
fi

if [ -n "${QOS_PACEMAKER_NODE:-}" ]; then
    exec attrd_updater --node "$QOS_PACEMAKER_NODE" --name "$attribute" --update "$value"
fi
exec attrd_updater --name "$attribute" --update "$value"
