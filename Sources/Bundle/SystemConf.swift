import Basics

/// `/etc/rauc/system.conf` for an A/B device, from a plain model (the board layer fills it).
public struct RaucSystemConfig: Sendable, Equatable {
    public enum Bootloader: Sendable, Equatable {
        case grub(grubenv: String?)
        case uboot
        /// rauc's `custom` backend: a script/binary implementing get-primary, set-state, ...
        case custom(backend: String)

        var name: String {
            switch self {
            case .grub: return "grub"
            case .uboot: return "uboot"
            case .custom: return "custom"
            }
        }
    }

    public struct Slot: Sendable, Equatable {
        public var slotClass: String  // boot, kernel, rootfs
        public var index: Int
        public var device: String
        public var type: String  // raw, ext4, vfat, ...
        public var bootname: String?
        public var parent: String?  // e.g. "kernel.0"
        public var allowMounted: Bool

        public init(slotClass: String, index: Int, device: String, type: String, bootname: String? = nil,
                    parent: String? = nil, allowMounted: Bool = false) {
            self.slotClass = slotClass
            self.index = index
            self.device = device
            self.type = type
            self.bootname = bootname
            self.parent = parent
            self.allowMounted = allowMounted
        }
    }

    public var compatible: String
    public var bootloader: Bootloader
    public var statusFile: String?
    public var mountPrefix: String?
    /// e.g. ["-plain"] to accept verity bundles only.
    public var bundleFormats: [String]
    public var keyringPath: String
    public var checkPurpose: String?
    public var slots: [Slot]

    public init(compatible: String, bootloader: Bootloader, statusFile: String? = nil, mountPrefix: String? = nil,
                bundleFormats: [String] = [], keyringPath: String = "/etc/rauc/keyring.pem",
                checkPurpose: String? = nil, slots: [Slot]) {
        self.compatible = compatible
        self.bootloader = bootloader
        self.statusFile = statusFile
        self.mountPrefix = mountPrefix
        self.bundleFormats = bundleFormats
        self.keyringPath = keyringPath
        self.checkPurpose = checkPurpose
        self.slots = slots
    }

    /// The usual A/B layout: kernel + rootfs pairs (rootfs' parent is its kernel, so
    /// they switch together) and an optional shared boot partition, addressed by
    /// GPT partition label (`/dev/disk/by-partlabel/<prefix><name>`).
    public static func abSlots(partitionLabel: (String, String) -> String, bootType: String? = "vfat",
                               kernelType: String = "raw", rootfsType: String = "raw",
                               bootnames: (String, String) = ("A", "B")) -> [Slot] {
        var slots: [Slot] = []
        if let bootType {
            slots.append(Slot(slotClass: "boot", index: 0, device: "/dev/disk/by-partlabel/" + partitionLabel("boot", ""),
                              type: bootType, allowMounted: true))
        }
        for (i, (suffix, bootname)) in [("a", bootnames.0), ("b", bootnames.1)].enumerated() {
            slots.append(Slot(slotClass: "kernel", index: i, device: "/dev/disk/by-partlabel/" + partitionLabel("kernel", suffix),
                              type: kernelType, bootname: bootname))
            slots.append(Slot(slotClass: "rootfs", index: i, device: "/dev/disk/by-partlabel/" + partitionLabel("rootfs", suffix),
                              type: rootfsType, parent: "kernel.\(i)"))
        }
        return slots
    }

    public func validate() throws {
        func bad(_ msg: String) -> BundleError { BundleError(.input, path: "system.conf", msg) }
        if compatible.isEmpty { throw bad("[system] compatible must not be empty") }
        var names = Set<String>()
        for s in slots {
            let n = "\(s.slotClass).\(s.index)"
            guard names.insert(n).inserted else { throw bad("duplicate slot [slot.\(n)]") }
            guard s.device.hasPrefix("/") else { throw bad("[slot.\(n)] device '\(s.device)' must be an absolute path") }
        }
        for s in slots {
            if let p = s.parent, !names.contains(p) {
                throw bad("[slot.\(s.slotClass).\(s.index)] parent '\(p)' is not a defined slot")
            }
            if s.parent != nil && s.bootname != nil {
                throw bad("[slot.\(s.slotClass).\(s.index)] a child slot (with parent) must not have a bootname")
            }
        }
        let bootnames = slots.compactMap(\.bootname)
        if Set(bootnames).count != bootnames.count { throw bad("bootnames must be unique: \(bootnames)") }
    }

    public func render() throws -> String {
        try validate()
        var w = KeyFileWriter()
        var system: [(String, String?)] = [
            ("compatible", KeyFile.escape(compatible)),
            ("bootloader", bootloader.name),
        ]
        if case let .grub(env) = bootloader { system.append(("grubenv", env)) }
        system += [
            ("statusfile", statusFile),
            ("mountprefix", mountPrefix),
            ("bundle-formats", bundleFormats.isEmpty ? nil : bundleFormats.joined(separator: " ")),
        ]
        w.group("system", system)
        w.group("keyring", [("path", keyringPath), ("check-purpose", checkPurpose)])
        if case let .custom(backend) = bootloader {
            w.group("handlers", [("bootloader-custom-backend", backend)])
        }
        for s in slots {
            w.group("slot.\(s.slotClass).\(s.index)", [
                ("device", s.device),
                ("type", s.type),
                ("bootname", s.bootname),
                ("parent", s.parent),
                ("allow-mounted", s.allowMounted ? "true" : nil),
            ])
        }
        return w.text
    }
}
