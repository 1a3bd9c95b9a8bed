import Rootfs
import StageRunner

/// Debian packages a stage fetches are resolved inputs of that stage: the exact pin it
/// used ("apt:KEY" -> file + sha256) goes into its done record, and before every build
/// the pin in the lock file is compared with it (a small JSON read, no apt, no network).
/// A pin that changed or was removed (to take a newer package) reruns the stage.
enum AptPins {
    /// Lock file of the packages build stages fetch (kernel, GRUB, U-Boot) when the stage
    /// names none: `<download cache>/apt/apt-lock.json`.
    static func stageLockPath(downloadCache: String) -> String {
        AptFetcher.defaultLockPath(cacheDirectory: stageCacheDirectory(downloadCache: downloadCache))
    }

    static func stageCacheDirectory(downloadCache: String) -> String { downloadCache + "/apt" }

    /// Reports each package the fetcher returns as a resolved input of the running stage.
    static func recorder(_ sctx: StageContext) -> (String, AptFetcher.LockEntry) -> Void {
        { spec, pin in sctx.resolved(AptFetcher.resolvedKind + ":" + spec, pin.resolvedValue) }
    }

    /// A fetcher for a build stage: `<download cache>/apt` and its lock, pins recorded.
    static func fetcher(_ sctx: StageContext) -> AptFetcher {
        AptFetcher(cacheDirectory: stageCacheDirectory(downloadCache: sctx.downloadCache), log: { sctx.log.line($0) }, onUse: recorder(sctx))
    }

    /// The plan-time check for the pins a stage recorded. `lockPath` nil: the stage lock
    /// in the runner's download cache (what `fetcher` uses).
    static func checks(lockPath: String? = nil) -> [String: ResolvedInputCheck] {
        let path: @Sendable (String) -> String = { lockPath ?? stageLockPath(downloadCache: $0) }
        return [AptFetcher.resolvedKind: ResolvedInputCheck(
            current: { name, dl in try AptFetcher.currentPin(spec: name, lockPath: path(dl)) },
            explain: { key, recorded, now, dl in AptFetcher.describePinChange(key: key, recorded: recorded, now: now, lockPath: path(dl)) })]
    }
}
