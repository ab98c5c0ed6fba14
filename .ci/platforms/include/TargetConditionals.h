/* A stand-in for the Apple SDK's TargetConditionals.h, which Debian does not ship. ring's C code
 * (a dev-dependency, through libp2p) includes it when it is built for an Apple target. The
 * cross-platform check (scripts/platforms.sh) only type-checks the crate for those targets: the
 * objects built with this header are never linked or run. Clang says which Apple OS it targets. */
#ifndef LIBP2P_REUSEPORT_TARGET_CONDITIONALS_STUB_H
#define LIBP2P_REUSEPORT_TARGET_CONDITIONALS_STUB_H
#define TARGET_OS_MAC 1
#if defined(__ENVIRONMENT_IPHONE_OS_VERSION_MIN_REQUIRED__) || defined(__ENVIRONMENT_IOS_VERSION_MIN_REQUIRED__)
#define TARGET_OS_OSX 0
#define TARGET_OS_IPHONE 1
#define TARGET_OS_IOS 1
#else
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#endif
#endif
