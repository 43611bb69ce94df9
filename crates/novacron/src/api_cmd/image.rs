//! `novacron image`: list, show, import and delete the images VM disks are made from.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use novacron_api::types::ImageImportRequest;
use novacron_model::{Image, Name};

use super::exit::EXIT_STATUS_HELP;
use super::table::{key_values, or_dash, table};
use super::wait::{WaitArgs, follow};
use super::{ApiArgs, Ctx, print_json};

/// `novacron image`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct ImageArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) cmd: ImageCommand,
}

/// The `image` commands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images on the node.
    List,
    /// Show one image.
    Show {
        /// Image name.
        name: String,
    },
    /// Copy an image from files on the server's host into its image store (admin).
    Import(ImportArgs),
    /// Delete an image no VM uses (admin).
    Delete {
        /// Image name.
        name: String,
    },
}

/// `image import`. The paths are read by the server, on its host: a relative path is made
/// absolute against this command's working directory, which only helps when both run on the
/// same host.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Name for the image: a-z, 0-9 and '-', up to 63 characters.
    pub name: Name,
    /// Base disk (qcow2 or raw), a path on the server's host; relative paths are taken from
    /// the current directory.
    #[arg(long, value_name = "PATH")]
    pub disk: PathBuf,
    /// Kernel to boot directly, a path on the server's host (relative: from the current
    /// directory).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk, a path on the server's host (needs --kernel; relative: from the
    /// current directory).
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (needs --kernel).
    #[arg(long, value_name = "STR", requires = "kernel")]
    pub cmdline: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs an `image` command.
///
/// # Errors
/// Bad settings, or the command's failure (see the exit statuses).
pub fn run(args: ImageArgs) -> anyhow::Result<ExitCode> {
    let ImageArgs { api, cmd } = args;
    super::run(&api, |ctx| async move { dispatch(&ctx, cmd).await })
}

async fn dispatch(ctx: &Ctx, cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::List => {
            let images = ctx
                .client
                .list_images()
                .await
                .context("could not list images")?;
            if ctx.json {
                return print_json(&images);
            }
            print!("{}", list_text(&images));
            Ok(())
        }
        ImageCommand::Show { name } => {
            let image = ctx
                .client
                .get_image(&name)
                .await
                .with_context(|| format!("could not show image {name}"))?;
            if ctx.json {
                return print_json(&image);
            }
            print!("{}", show_text(&image));
            Ok(())
        }
        ImageCommand::Import(args) => {
            let cwd = std::env::current_dir().context("could not read the current directory")?;
            let req = import_request(&args, &cwd)?;
            let name = args.name.as_str();
            let op = ctx
                .client
                .import_image(&req)
                .await
                .with_context(|| format!("could not import image {name}"))?;
            follow(ctx, op, name, &args.wait, true).await.map(drop)
        }
        ImageCommand::Delete { name } => {
            ctx.client
                .delete_image(&name)
                .await
                .with_context(|| format!("could not delete image {name}"))?;
            if !ctx.json {
                eprintln!("deleted image {name}");
            }
            Ok(())
        }
    }
}

/// The request of `image import`, with relative paths made absolute against `cwd`.
fn import_request(args: &ImportArgs, cwd: &Path) -> anyhow::Result<ImageImportRequest> {
    let abs = |p: &Path| -> anyhow::Result<String> {
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            let rel: PathBuf = p
                .components()
                .filter(|c| !matches!(c, Component::CurDir))
                .collect();
            cwd.join(rel)
        };
        match full.to_str() {
            Some(s) => Ok(s.to_owned()),
            None => bail!("{} is not UTF-8; the API takes UTF-8 paths", full.display()),
        }
    };
    Ok(ImageImportRequest {
        name: args.name.clone(),
        disk: abs(&args.disk)?,
        kernel: args.kernel.as_deref().map(abs).transpose()?,
        initrd: args.initrd.as_deref().map(abs).transpose()?,
        cmdline: args.cmdline.clone(),
    })
}

fn list_text(images: &[Image]) -> String {
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            vec![
                i.name.to_string(),
                i.disk_format.clone(),
                i.virtual_size.to_string(),
                if i.kernel.is_some() { "kernel" } else { "disk" }.to_owned(),
                i.created_at.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "FORMAT", "SIZE", "BOOT", "CREATED"], &rows)
}

fn show_text(i: &Image) -> String {
    key_values(&[
        ("name", i.name.to_string()),
        ("disk", i.disk.clone()),
        ("disk_format", i.disk_format.clone()),
        ("virtual_size", i.virtual_size.to_string()),
        ("kernel", or_dash(i.kernel.as_deref())),
        ("initrd", or_dash(i.initrd.as_deref())),
        ("cmdline", or_dash(i.cmdline.as_deref())),
        ("created_at", i.created_at.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_cmd::tests::{TestCommand, parse};
    use novacron_model::{ByteSize, Timestamp};

    fn import(args: &[&str]) -> ImportArgs {
        let mut all = vec!["image", "import"];
        all.extend_from_slice(args);
        match parse(&all) {
            Ok(TestCommand::Image(ImageArgs {
                cmd: ImageCommand::Import(a),
                ..
            })) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn relative_paths_are_made_absolute_against_the_working_directory() {
        let a = import(&[
            "deb",
            "--disk",
            "./img/d.qcow2",
            "--kernel",
            "/boot/vmlinuz",
            "--initrd",
            "initrd.img",
            "--cmdline",
            "console=ttyS0",
        ]);
        let req = import_request(&a, Path::new("/home/op")).unwrap();
        assert_eq!(req.name.as_str(), "deb");
        assert_eq!(req.disk, "/home/op/img/d.qcow2");
        assert_eq!(req.kernel.as_deref(), Some("/boot/vmlinuz"));
        assert_eq!(req.initrd.as_deref(), Some("/home/op/initrd.img"));
        assert_eq!(req.cmdline.as_deref(), Some("console=ttyS0"));
        let a = import(&["raw", "--disk", "/srv/raw.img"]);
        let req = import_request(&a, Path::new("/x")).unwrap();
        assert_eq!((req.disk.as_str(), req.kernel), ("/srv/raw.img", None));
    }

    #[test]
    fn the_list_tells_kernel_boots_from_disk_boots() {
        let mut i = Image {
            name: Name::new("deb").unwrap(),
            disk: "/d".into(),
            disk_format: "qcow2".into(),
            virtual_size: ByteSize(2 << 30),
            kernel: None,
            initrd: None,
            cmdline: None,
            created_at: Timestamp(0),
            digest: None,
        };
        let disk = i.clone();
        i.name = Name::new("tiny").unwrap();
        i.kernel = Some("/k".into());
        assert_eq!(
            list_text(&[disk, i.clone()]),
            "NAME  FORMAT  SIZE  BOOT    CREATED\n\
             deb   qcow2   2G    disk    1970-01-01T00:00:00.000Z\n\
             tiny  qcow2   2G    kernel  1970-01-01T00:00:00.000Z\n"
        );
        assert!(show_text(&i).contains("kernel:        /k\n"));
    }
}
