import Basics
import Foundation
import Testing

/// Runs the real `rauc service` with a custom system.conf and drives it with `rauc`
/// commands, as on a device. Debian's rauc talks to the service over D-Bus (a private
/// session bus here, `dbus-run-session`) and takes the booted slot only from
/// /proc/cmdline, so everything runs in a mount namespace (`unshare -m`) where
/// DIR/cmdline is bind-mounted over it. Used by the RAUC custom-backend tests.
public struct RaucService {
    public enum Action {
        /// `rauc ARGS`: its exit status, stdout and stderr become the step's result.
        case rauc([String])
        /// A shell command run in DIR between rauc steps (no result).
        case shell(String)
    }

    public struct Step: CustomStringConvertible {
        public let rc: String
        public let out: String
        public let err: String
        /// What `afterEach` left in DIR/N.after, if anything.
        public let after: String?
        public var description: String { "rc=\(rc) out=\(out) err=\(err) after=\(after ?? "-")" }
    }

    public let rauc: String
    let session: String
    let unshare: String
    public let directory: String

    /// nil (with the reason printed, or a failure under CI=true) when a tool is missing.
    public init?(directory: String) {
        guard let rauc = TestEnv.oracle("rauc", package: "rauc"),
              let session = TestEnv.oracle("dbus-run-session", package: "dbus-daemon"),
              let unshare = TestEnv.oracle("unshare", package: "util-linux") else { return nil }
        self.rauc = rauc
        self.session = session
        self.unshare = unshare
        self.directory = directory
    }

    /// Starts the service with `conf` (DIR/cmdline must exist), runs `actions` in order,
    /// stops it, and returns one result per action (nil for `.shell`). `afterEach(n)` is a
    /// shell command run after rauc step n whose output is kept (e.g. a control file's
    /// state). Returns also the service's log.
    public func run(conf: String, actions: [Action], environment: [String: String]? = nil,
                    afterEach: ((Int) -> String)? = nil) throws -> (steps: [Step?], serviceLog: String) {
        var body = """
            set -u
            cd \(directory)
            mount --bind cmdline /proc/cmdline
            \(session) -- sh -c '
              export DBUS_STARTER_BUS_TYPE=session
              \(rauc) --conf=\(conf) service > service.log 2>&1 & svc=$!
              i=0; until \(rauc) status > /dev/null 2>&1 || [ $i = 50 ]; do sleep 0.2; i=$((i + 1)); done

            """
        for (n, action) in actions.enumerated() {
            switch action {
            case .shell(let cmd):
                body += "  \(cmd)\n"
            case .rauc(let args):
                body += "  \(rauc) \(args.joined(separator: " ")) > \(n).out 2> \(n).err; echo $? > \(n).rc\n"
                if let after = afterEach?(n) { body += "  \(after) > \(n).after\n" }
            }
        }
        body += "  kill $svc; wait $svc\n' 2> dbus.err\n"
        let run = try Subprocess.run([unshare, "-m", "sh", "-c", body], environment: environment, check: false)
        let log = (try? FileSystem.readText(directory + "/service.log")) ?? ""
        guard run.status == 0 else {
            throw MessageError("rauc service run failed (\(run.status)): \(run.stderrText) \((try? FileSystem.readText(directory + "/dbus.err")) ?? "") \(log)")
        }
        var steps: [Step?] = []
        for (n, action) in actions.enumerated() {
            guard case .rauc = action else { steps.append(nil); continue }
            func read(_ ext: String) throws -> String { try FileSystem.readText(directory + "/\(n).\(ext)") }
            steps.append(Step(rc: try read("rc"), out: try read("out"), err: try read("err"),
                              after: afterEach == nil ? nil : try read("after")))
        }
        return (steps, log)
    }

    /// A `rauc status --output-format=json` step's object (empty when it failed to parse).
    public static func json(_ step: Step?) -> [String: Any] {
        guard let step, let j = try? JSONSerialization.jsonObject(with: Data(step.out.utf8)) as? [String: Any] else { return [:] }
        return j
    }

    /// Slot name -> boot_status from a `rauc status` JSON object.
    public static func bootStatus(_ j: [String: Any]) -> [String: String] {
        var out: [String: String] = [:]
        for entry in j["slots"] as? [[String: Any]] ?? [] {
            for (name, v) in entry { out[name] = (v as? [String: Any])?["boot_status"] as? String }
        }
        return out
    }
}
