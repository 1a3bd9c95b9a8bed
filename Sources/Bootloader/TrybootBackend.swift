import Basics

/// RAUC's custom bootloader backend for the Raspberry Pi tryboot A/B scheme
/// (`bootloader=custom`, `[handlers] bootloader-custom-backend=` in system.conf): a
/// busybox script, like mark-good (same helpers, the same autoboot.txt texts from
/// `Autoboot.render`, the same boot-control mount and write). RAUC runs it as
/// `get-primary`, `get-state SLOT`, `set-primary SLOT`, `set-state SLOT good|bad` and,
/// since RAUC 1.11 when /proc/cmdline names no slot, `get-current`; answers go to stdout,
/// messages to stderr, non-zero exit on any error.
///
/// State, read from autoboot.txt, which must be one of the texts osbuild writes for the
/// slots' boot partitions (D = [all] boot_partition, T = [tryboot]):
/// - primary = the slot of D (what a normal boot starts);
/// - a slot is good while D or T names its partition; D = T = p marks the other slot bad
///   (a `reboot "0 tryboot"` then starts p again, never the bad slot).
/// `set-primary X` (RAUC: after writing X) makes X the [tryboot] partition, D unchanged, so
/// `reboot "0 tryboot"` tries X once and mark-good commits it; X already D or T: nothing.
/// `set-state X bad` (RAUC: before writing X) leaves the other slot as D and T; refused
/// when the other slot is bad already. `set-state X good` makes a bad X the [tryboot] one.
public enum TrybootBackendScript {
    /// Where the rootfs carries the script (system.conf's bootloader-custom-backend).
    public static let installPath = "/usr/lib/osbuild/tryboot-backend"
    public static let prefix = "osbuild-tryboot-backend"

    public static func render(slots: [(name: String, bootPartition: Int)], controlPartition: String, partitionFinder: String) throws -> String {
        try MarkGoodScript.check(slots.map(\.name))
        guard slots.count == 2, slots[0].bootPartition != slots[1].bootPartition else {
            throw MessageError("tryboot backend: needs two slots with different boot partitions, got \(slots.map { "\($0.name)=#\($0.bootPartition)" })")
        }
        let names = slots.map(\.name).joined(separator: " ")
        let map = slots.map { "\($0.name)=#\($0.bootPartition)" }.joined(separator: " ")
        let usage = "tryboot-backend get-primary | get-current | get-state SLOT | set-primary SLOT | set-state SLOT good|bad"
        var s = MarkGoodScript.helpers("RAUC custom bootloader backend for Raspberry Pi tryboot (autoboot.txt).", prefix: prefix,
                                       usage: "Usage: \(usage). Answers on stdout, messages on stderr.", stderr: true, partitionFinder: partitionFinder)
        s += """
            cmd=$1; state=$3
            case "$cmd $#" in
              "get-primary 1"|"get-current 1"|"get-state 2"|"set-primary 2"|"set-state 3") ;;
              *) fail "usage: \(usage) (got: $*)" ;;
            esac
            part_of() {
              case "$1" in

            """
        for sl in slots { s += "    \(sl.name)) echo \(sl.bootPartition) ;;\n" }
        s += """
                *) return 1 ;;
              esac
            }
            slot_of() {
              case "$1" in

            """
        for sl in slots { s += "    \(sl.bootPartition)) echo \(sl.name) ;;\n" }
        s += """
                *) return 1 ;;
              esac
            }
            slot=
            if [ $# -ge 2 ]; then
              slot=$2
              p=$(part_of "$slot") || fail "unknown slot '$slot' (this image has slots \(names))"
              case "$slot" in

            """
        for (i, sl) in slots.enumerated() { s += "    \(sl.name)) q=\(slots[1 - i].bootPartition) ;;\n" }
        s += """
              esac
            fi
            [ "$cmd" != set-state ] || [ "$state" = good ] || [ "$state" = bad ] || fail "set-state: the state must be good or bad, got '$state'"
            if [ "$cmd" = get-current ]; then
              # The partition the firmware booted; without it (not started by the Pi
              # firmware) the rauc.slot= the boot partition's cmdline.txt passes.
              dt=${OSBUILD_DEVICE_TREE:-/proc/device-tree}/chosen/bootloader
              if [ -e "$dt/partition" ]; then
                b=$(read_u32 "$dt/partition")
                [ -n "$b" ] || fail "$dt/partition is not a 32-bit value"
                slot_of "$b" || fail "the firmware booted partition $b, which is no slot's boot partition (\(map))"
                exit 0
              fi
              cl=${OSBUILD_CMDLINE:-/proc/cmdline}
              for w in $(cat "$cl"); do
                case "$w" in rauc.slot=*) part_of "${w#rauc.slot=}" >/dev/null || fail "$cl: unknown rauc.slot '${w#rauc.slot=}' (slots \(names))"; echo "${w#rauc.slot=}"; exit 0 ;; esac
              done
              fail "cannot tell the booted slot: no $dt/partition and no rauc.slot= in $cl"
            fi
            # Every autoboot.txt this image's osbuild writes: $tmp.D.T for each pair of boot partitions.

            """
        for d in slots { for t in slots { s += try MarkGoodScript.autobootHereDoc(boot: d.bootPartition, tryboot: t.bootPartition, to: "$tmp.\(d.bootPartition).\(t.bootPartition)") } }
        let parts = slots.map { String($0.bootPartition) }.joined(separator: " ")
        s += """
            case "$cmd" in set-*) mode=rw ;; *) mode=ro ;; esac
            if [ "$mode" = rw ]; then

            """
        s += try MarkGoodScript.bootControlMount(controlPartition, mode: "rw") + "else\n" + (try MarkGoodScript.bootControlMount(controlPartition, mode: "ro")) + "fi\n"
        s += MarkGoodScript.writeAutobootFunction
        s += """
            d=; t=
            for x in \(parts); do for y in \(parts); do
              cmp -s "$f" "$tmp.$x.$y" && { d=$x; t=$y; }
            done; done
            [ -n "$d" ] || unmount_fail "autoboot.txt on $dev is not one of the texts osbuild writes for this image (boot_partition and tryboot each one of \(map)): not touching it"
            nd=$d; nt=$t; out=
            case "$cmd" in
              get-primary) out=$(slot_of $d) ;;
              get-state) if [ $d = $p ] || [ $t = $p ]; then out=good; else out=bad; fi ;;
              set-primary|set-state)
                if [ "$cmd $state" = "set-state bad" ]; then
                  if [ $d = $p ] && [ $t = $p ]; then
                    unmount_fail "slot $slot is the only good slot (autoboot.txt boots partition $p, tryboot $p; slot $(slot_of $q) is bad): marking it bad would leave nothing to boot; mark slot $(slot_of $q) good first"
                  fi
                  nd=$q; nt=$q
                elif [ $d != $p ] && [ $t != $p ]; then
                  nt=$p
                fi ;;
            esac
            if [ "$nd.$nt" != "$d.$t" ]; then
              write_autoboot "$tmp.$nd.$nt"
              say "$cmd $slot${state:+ $state}: autoboot.txt now boots partition $nd by default, tryboot $nt (was $d, $t)"
            elif [ -n "$slot" ] && [ "$cmd" != get-state ]; then
              say "$cmd $slot${state:+ $state}: nothing to change (autoboot.txt boots partition $d by default, tryboot $t)"
            fi
            umount "$mnt" || fail "cannot unmount $mnt"
            cleanup
            [ -z "$out" ] || echo "$out"

            """
        return s
    }
}
