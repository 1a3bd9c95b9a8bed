import Basics

/// The initramfs `/init`: a busybox shell script generated from the board's resolved
/// modules. It mounts the API filesystems, loads the modules in dependency order, waits
/// for the partition named by `root=` (PARTLABEL=: no udev, so it reads PARTNAME from
/// /sys/class/block/*/uevent; MBR PARTUUID=<signature>-<nn>: the disk's signature and PARTN), mounts it read-only and switch_roots into
/// `/sbin/init`. Every step prints an `osbuild-initramfs:` line so a failed boot names the
/// step it reached; any failure prints the reason and reboots after a short delay, so the
/// bootloader's try counter can fall back to the other slot.
public enum InitramfsInit {
    public struct Options: Sendable, Hashable {
        /// Filesystem type of the root partition (`erofs`, `squashfs`, `ext4`); `rootfstype=`
        /// on the kernel command line overrides it.
        public var rootFSType: String
        /// Seconds to wait for the root partition to appear (`rootwait=` overrides).
        public var rootWait: Int
        /// Seconds before `reboot -f` after a failure (long enough to read the reason).
        public var failureDelay: Int
        public init(rootFSType: String = "erofs", rootWait: Int = 30, failureDelay: Int = 3) {
            (self.rootFSType, self.rootWait, self.failureDelay) = (rootFSType, rootWait, failureDelay)
        }
    }

    /// Where busybox lives in the initramfs (the script's interpreter).
    public static let busybox = "/bin/busybox"

    /// `find_root SPEC`: prints the device node for PARTLABEL=NAME (GPT), PARTUUID=SSSSSSSS-NN
    /// (MBR) or /dev/NODE once it exists (status 1: not yet, 2: unsupported spec). Needs
    /// od, tr, basename, dirname, readlink as commands; the rootfs scripts that find a
    /// partition without udev (mark-good) reuse it.
    public static let findPartitionFunction = """
        # Prints the device node for PARTLABEL=NAME (GPT), PARTUUID=SSSSSSSS-NN (MBR) or
        # /dev/NODE once it exists.
        find_root() {
          case "$1" in
            PARTLABEL=*)
              want=${1#PARTLABEL=}
              for u in /sys/class/block/*/uevent; do
                [ -e "$u" ] || continue
                name=""; dev=""
                while IFS== read -r k v; do
                  case "$k" in PARTNAME) name=$v ;; DEVNAME) dev=$v ;; esac
                done < "$u"
                if [ "$name" = "$want" ] && [ -n "$dev" ] && [ -b "/dev/$dev" ]; then echo "/dev/$dev"; return 0; fi
              done
              return 1 ;;
            PARTUUID=*)
              # MBR disks (no names): <disk signature>-<partition number>, as Linux
              # spells it: the little-endian u32 at byte 440 in hex, the number in hex.
              want=$(echo "${1#PARTUUID=}" | tr 'A-F' 'a-f')
              for u in /sys/class/block/*/uevent; do
                [ -e "$u" ] || continue
                n=""; dev=""
                while IFS== read -r k v; do
                  case "$k" in PARTN) n=$v ;; DEVNAME) dev=$v ;; esac
                done < "$u"
                [ -n "$n" ] && [ -n "$dev" ] && [ -b "/dev/$dev" ] || continue
                disk=$(basename "$(dirname "$(readlink -f "${u%/uevent}")")")
                sig=$(od -A n -t x4 -j 440 -N 4 "/dev/$disk" 2>/dev/null | tr -d ' \n')
                if [ "$(printf '%s-%02x' "$sig" "$n")" = "$want" ]; then echo "/dev/$dev"; return 0; fi
              done
              return 1 ;;
            /dev/*) [ -b "$1" ] && echo "$1" ;;
            *) return 2 ;;
          esac
        }
        """

    /// The script; `modules` are paths relative to `/lib/modules/<kernelVersion>` in load
    /// order (dependencies first), as `KernelModules.resolve` returns them.
    public static func script(modules: [String], kernelVersion: String, options: Options) throws -> String {
        for m in modules + (modules.isEmpty ? [] : [kernelVersion]) + [options.rootFSType] where m.isEmpty || m.contains(where: { " \t\n'\"$`\\;&|<>()*?".contains($0) }) {
            throw RootfsError("initramfs init: \(m.debugDescription) cannot be written into the init script (empty, or contains whitespace or shell characters)")
        }
        let moduleList = modules.joined(separator: "\n")
        return """
            #!\(busybox) sh
            # osbuild initramfs init (generated; see Sources/Rootfs/InitramfsInit.swift).
            /bin/busybox mkdir -p /proc /sys /dev /newroot /sbin /usr/bin /usr/sbin /tmp
            /bin/busybox mount -t proc proc /proc
            /bin/busybox --install -s
            export PATH=/sbin:/bin:/usr/sbin:/usr/bin

            msg() { echo "osbuild-initramfs: $*"; }
            fail() {
              echo "osbuild-initramfs: FAILED: $*"
              echo "osbuild-initramfs: rebooting in \(options.failureDelay) s"
              sleep \(options.failureDelay)
              sync
              reboot -f
              echo b > /proc/sysrq-trigger
              while :; do sleep 60; done
            }

            [ -e /proc/self ] || fail "mount proc on /proc"
            if ! grep -q "^devtmpfs /dev " /proc/mounts; then
              mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs on /dev"
            fi
            # The kernel opens /dev/console before /init; without the node it cannot.
            [ -t 1 ] || exec </dev/console >/dev/console 2>&1
            mount -t sysfs sysfs /sys || fail "mount sysfs on /sys"
            msg "started (kernel $(uname -r))"

            KVER=\(kernelVersion)
            [ "$(uname -r)" = "$KVER" ] || msg "warning: running kernel $(uname -r), modules are for $KVER"
            n=0
            MODULES="
            \(moduleList)
            "
            for m in $MODULES; do
              out=$(insmod "/lib/modules/$KVER/$m" 2>&1) || case "$out" in
                *"File exists"*) ;;
                *"No such device"*) msg "skipped $m (no matching device or CPU feature)" ;;
                *) msg "warning: insmod $m: $out" ;;
              esac
              n=$((n + 1))
            done
            msg "loaded $n modules"

            root=""; fstype=\(options.rootFSType); wait=\(options.rootWait); slot=""
            for arg in $(cat /proc/cmdline); do
              case "$arg" in
                root=*) root=${arg#root=} ;;
                rootfstype=*) fstype=${arg#rootfstype=} ;;
                rootwait=*) wait=${arg#rootwait=} ;;
                rauc.slot=*) slot=${arg#rauc.slot=} ;;
              esac
            done
            [ -n "$root" ] || fail "no root= on the kernel command line: $(cat /proc/cmdline)"

            \(findPartitionFunction)
            msg "waiting up to ${wait} s for root=$root (slot ${slot:-?})"
            ticks=$((wait * 4)); dev=""
            while :; do
              dev=$(find_root "$root"); rc=$?
              [ $rc -eq 2 ] && fail "root=$root: only PARTLABEL=NAME, PARTUUID=SSSSSSSS-NN (MBR) and /dev/NODE are supported"
              [ -n "$dev" ] && break
              ticks=$((ticks - 1))
              [ $ticks -gt 0 ] || fail "root partition $root did not appear within ${wait} s; block devices: $(ls /sys/class/block | tr '\\n' ' ')"
              sleep 0.25
            done
            msg "root $root is $dev"
            mount -t "$fstype" -o ro "$dev" /newroot || fail "mount $dev ($root) as $fstype read-only"
            msg "mounted $dev on /newroot ($fstype, ro)"
            [ -x /newroot/sbin/init ] || [ -L /newroot/sbin/init ] || fail "no executable /sbin/init in the rootfs on $dev"
            # Hand /dev over; proc and sys are mounted again by the rootfs init.
            if [ -d /newroot/dev ]; then mount --move /dev /newroot/dev || fail "move /dev into the rootfs"; fi
            umount /sys
            msg "switching to the rootfs on $dev"
            umount /proc
            exec switch_root /newroot /sbin/init
            """ + "\n"
    }
}
