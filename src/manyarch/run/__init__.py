"""Pull images into the local store and run them as containers, without a daemon.

local       pull (host platform or a forced one), list, remove, save, load
rootfs      one unpacked rootfs per manifest digest, and a copy-on-write view per container
network     ``-p HOST:CONTAINER`` through Debian's ``pasta`` into the container's netns
container   start, supervise (signals, exit code, clean-up), ps, logs, stop, rm
"""
