import Testing
import Rootfs

// Replaced by real tests when the module lands.
@Test func RootfsModuleLinks() { _ = RootfsModule.self }
