import OSBuildKit
print("osbuild")
